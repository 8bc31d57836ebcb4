# One image for every Quaero process; the compose file picks the entry module per container.
FROM python:3.11-slim AS build
# Bytecode compiled at build time: the image runs as a user that cannot write it, and every process
# (a worker's spawned parse pool too) would otherwise compile each module it imports at start-up.
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project
COPY protos ./protos
RUN .venv/bin/python -m grpc_tools.protoc -I protos --python_out=protos --pyi_out=protos \
      --grpc_python_out=protos protos/quaero/v1/*.proto
COPY libs ./libs
COPY services ./services
COPY cli ./cli
COPY examples ./examples
RUN uv sync --frozen --no-dev && .venv/bin/python -m compileall -q libs services cli protos

FROM python:3.11-slim
# Chromium renders pages that need JavaScript (QUAERO_BROWSER_PATH; README "Pages that need JavaScript").
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends chromium fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    QUAERO_BIND_HOST=0.0.0.0 \
    QUAERO_DATA_DIR=/data
RUN useradd --uid 10001 --no-create-home quaero && mkdir /data && chown quaero /data
USER quaero
EXPOSE 8080 50050 50051 50052
# Embedded mode by default; docker-compose.yml runs each service in its own container.
CMD ["quaero", "up"]
