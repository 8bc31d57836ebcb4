"""Server-Sent Events from a gRPC watch stream, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from fastapi import Request
from fastapi.responses import StreamingResponse

from libs.errors import FieldViolation
from services.gateway.errors import ApiError

KEEPALIVE_SECONDS = 15.0
_END = object()


def last_event_id(request: Request, query_value: int | None) -> int:
    """The event id to resume after: the Last-Event-ID header (browsers send it on reconnect) or
    the `last_event_id` query parameter; 0 starts with a snapshot."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        try:
            value = int(header)
        except ValueError as exc:
            raise ApiError(
                400, "Last-Event-ID must be an event id", [FieldViolation("Last-Event-ID", "must be an integer")]
            ) from exc
        if value < 0:
            raise ApiError(
                400, "Last-Event-ID must be 0 or more", [FieldViolation("Last-Event-ID", "must be 0 or more")]
            )
        return value
    return query_value or 0


def frame(event_id: int, event_type: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _pump(call: Any, queue: asyncio.Queue[Any]) -> None:
    try:
        async for message in call:
            await queue.put(message)
    except grpc.aio.AioRpcError as exc:
        await queue.put(exc)
    finally:
        await queue.put(_END)


def sse_response(call: Any, render: Callable[[Any], tuple[int, str, dict[str, Any]]]) -> StreamingResponse:
    """Stream `call` (a gRPC server stream) as SSE; `render` turns a message into (id, type, data).

    A comment line every 15 s keeps proxies from closing an idle stream. The gRPC call is
    cancelled when the client goes away."""

    async def body() -> AsyncIterator[str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        pump = asyncio.create_task(_pump(call, queue))
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is _END:
                    return
                if isinstance(item, grpc.aio.AioRpcError):
                    yield frame(0, "error", {"code": item.code().name, "message": item.details() or ""})
                    return
                yield frame(*render(item))
        finally:
            pump.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
