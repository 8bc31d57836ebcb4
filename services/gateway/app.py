"""create_app(): the REST API, web UI and metrics, wired to the executor and crawler over gRPC."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc
from services.gateway.auth import TokenAuthMiddleware
from services.gateway.errors import install_error_handlers
from services.gateway.middleware import ObserveMiddleware, RequestIdMiddleware
from services.gateway.routes import definitions, documents, executions, jobs, operations, sources
from services.gateway.schemas import add_component_schemas, drop_validation_responses

log = logging.getLogger(__name__)

UI_DIR = Path(__file__).parent / "ui"

DESCRIPTION = """Quaero crawls websites into a searchable knowledge base, driven by job definitions.

Errors always have the shape `{"error": {"code", "message", "details": [{"field", "message"}]}}`.
Lists take `limit` (default 50, at most 500) and `offset`, and answer
`{<plural>, total_count, limit, offset}`. Every response carries an `X-Request-ID` (yours, if you
sent one). With `QUAERO_API_TOKEN` set, every route but `/healthz` needs
`Authorization: Bearer <token>` (or the `quaero_token` cookie the web UI sets).
"""


def _mount_ui(app: FastAPI) -> None:
    """The web UI: one HTML shell and its static files, no build step."""
    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(
    executor: executor_service_pb2_grpc.ExecutorServiceStub,
    crawler: crawler_service_pb2_grpc.CrawlerServiceStub,
    *,
    api_token: str | None = None,
) -> FastAPI:
    app = FastAPI(title="Quaero", version="0.1.0", description=DESCRIPTION)
    app.state.executor = executor
    app.state.crawler = crawler
    install_error_handlers(app)
    for module in (definitions, sources, executions, jobs, documents, operations):
        app.include_router(module.router)
    _mount_ui(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            add_component_schemas(schema, [definitions.JobDefinitionInput, sources.SourceInput])
            drop_validation_responses(schema)
            if api_token:
                schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                schema["security"] = [{"bearer": []}]
                schema["paths"]["/healthz"]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # The last added is the outermost: request id, then observation, then the token check.
    if api_token:
        app.add_middleware(TokenAuthMiddleware, token=api_token)
    app.add_middleware(ObserveMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


async def warm_routes(app: FastAPI) -> None:
    """Have FastAPI build every route's validators now. It builds them, for all the routes at
    once, on the first request that goes through the included routers: 0.4 s on an idle core
    (over a second on a loaded machine) of the event loop, stalling every request under way,
    /healthz included. One request for a path no route has, sent straight to the router (past
    the token check), walks them all."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/quaero-warm-up",
        "raw_path": b"/api/quaero-warm-up",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: MutableMapping[str, Any]) -> None:
        return None

    await app.router(scope, receive, send)  # a 404, sent nowhere
