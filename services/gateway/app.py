"""create_app(): the REST API, wired to the executor and crawler over gRPC."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.logs import REQUEST_ID_HEADER, request_context
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc
from services.gateway.errors import install_error_handlers
from services.gateway.routes import definitions, executions, jobs, sources
from services.gateway.schemas import add_component_schemas

log = logging.getLogger(__name__)

DESCRIPTION = """Quaero crawls websites into a searchable knowledge base, driven by job definitions.

Errors always have the shape `{"error": {"code", "message", "details": [{"field", "message"}]}}`.
"""


class RequestIdMiddleware:
    """Adopts the caller's X-Request-ID (or makes one), logs under it, echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == REQUEST_ID_HEADER.encode():
                incoming = value.decode("latin-1")[:128] or None
        with request_context(incoming) as rid:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), rid.encode())]
                await send(message)

            await self.app(scope, receive, send_with_id)


def create_app(
    executor: executor_service_pb2_grpc.ExecutorServiceStub,
    crawler: crawler_service_pb2_grpc.CrawlerServiceStub,
) -> FastAPI:
    app = FastAPI(title="Quaero", version="0.1.0", description=DESCRIPTION)
    app.state.executor = executor
    app.state.crawler = crawler
    install_error_handlers(app)
    app.include_router(definitions.router)
    app.include_router(sources.router)
    app.include_router(executions.router)
    app.include_router(jobs.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness of the gateway")
    async def healthz() -> Any:
        return JSONResponse({"status": "ok"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            add_component_schemas(schema, [definitions.JobDefinitionInput, sources.SourceInput])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(RequestIdMiddleware)
    return app
