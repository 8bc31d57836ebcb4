# Quaero. `make run` starts it with embedded defaults; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
PROTO_SRC := $(wildcard protos/quaero/v1/*.proto)
PROTO_STAMP := protos/quaero/v1/.generated

# Tests talk to real PostgreSQL and RabbitMQ; these are the local defaults.
export QUAERO_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export QUAERO_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export UV_PYTHON_DOWNLOADS := never
# Tests run in parallel, a process per core (pytest-xdist; each test has its own databases, queue
# names and ports); PYTEST_WORKERS=0 runs them in this one process.
PYTEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal
# Where PYTHONDONTWRITEBYTECODE turns bytecode off, the tests write it under .pytest_cache/bytecode
# (tests/conftest.py does the same for a bare pytest, but only after pytest and its plugins loaded).
ifneq ($(PYTHONDONTWRITEBYTECODE),)
test test-unit test-integration test-e2e: export PYTHONDONTWRITEBYTECODE :=
test test-unit test-integration test-e2e: export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.pytest_cache/bytecode
endif

.PHONY: help install protos run migrate test test-unit test-integration test-e2e lint fmt bench clean

help:
	@echo "make run      install what is missing and start Quaero (embedded: SQLite, in-process queue)"
	@echo "make test     run every test (needs PostgreSQL and RabbitMQ, see README)"
	@echo "make lint     ruff and mypy"
	@echo "make bench    benchmarks (crawl vs Scrapy, PostgreSQL manual, execute latency, WCXB extraction; BENCH_ARGS=--wcxb-only|--manual-only)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed $(PROTO_STAMP)

$(PROTO_STAMP): $(PROTO_SRC) $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I protos --python_out=protos --pyi_out=protos --grpc_python_out=protos $(PROTO_SRC)
	@touch $@

protos: $(VENV)/.installed
	@rm -f $(PROTO_STAMP)
	@$(MAKE) --no-print-directory $(PROTO_STAMP)

run: install
	QUAERO_DEFINITIONS_DIR=$${QUAERO_DEFINITIONS_DIR:-examples} $(VENV)/bin/quaero up

migrate: install
	$(VENV)/bin/quaero migrate

test: install
	$(PYTEST) tests $(PYTEST_ARGS)

test-unit: install
	$(PYTEST) tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PYTEST) tests/integration $(PYTEST_ARGS)

test-e2e: install
	$(PYTEST) tests/e2e $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) data protos/quaero/v1/*_pb2*.py* $(PROTO_STAMP)
