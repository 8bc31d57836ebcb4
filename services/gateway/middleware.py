"""ASGI middleware around every request: the request id, then an access log line and metrics."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs import metrics
from libs.logs import REQUEST_ID_HEADER, adopt_request_id, request_context
from services.gateway.errors import error_response

log = logging.getLogger(__name__)

_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()


class RequestIdMiddleware:
    """Adopts the caller's X-Request-ID (or makes one), logs under it, echoes it on the response.

    Outermost, so every response (401s and 500s included) carries the id and every log line the
    request causes, here or in a service it calls over gRPC, names it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == _REQUEST_ID_KEY:
                incoming = adopt_request_id(value)
        with request_context(incoming) as rid:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (_REQUEST_ID_KEY, rid.encode())]
                await send(message)

            await self.app(scope, receive, send_with_id)


def _route(scope: Scope) -> str:
    """The route template (`/api/jobs/{id}`), never the raw path: metric labels stay few."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class ObserveMiddleware:
    """Counts every request by route and status, logs one line per request, and turns an
    exception nothing else handled into the standard 500 body (logged with the request id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._observe(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            if not status:
                await error_response(500, "INTERNAL", "internal error")(scope, receive, observing_send)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        method, route = scope["method"], _route(scope)
        metrics.observe_http(method, route, status, seconds)
        # Successful reads (the UI polls) are debug; changes and failures are worth a line.
        level = logging.DEBUG if method in ("GET", "HEAD") and status < 400 else logging.INFO
        log.log(
            level,
            "%s %s %s",
            method,
            scope["path"],
            status,
            extra={
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
            },
        )
