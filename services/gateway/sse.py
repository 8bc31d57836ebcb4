"""Server-Sent Events from a gRPC watch stream, resumable with Last-Event-ID.

Each event's SSE id is its event row id (the snapshot's is the last event folded into it), so a
client that reconnects with `Last-Event-ID` gets every later event and loses none. After the
terminal event the stream sends `event: end` (no id) and closes: clients stop reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import grpc
from fastapi import Depends, Header, Query
from fastapi.responses import StreamingResponse

from libs import metrics

KEEPALIVE_SECONDS = 15.0
_END = object()
_MAX_EVENT_ID = 2**63 - 1  # event ids are 64-bit


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def _last_event_id(
    last_event_id: Annotated[
        int | None,
        Query(ge=0, le=_MAX_EVENT_ID, description="Resume after this event id (for clients that cannot set headers)."),
    ] = None,
    last_event_id_header: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=_MAX_EVENT_ID,
            description="Resume after this event id (browsers send it on reconnect).",
        ),
    ] = None,
) -> int:
    """The header wins over the query parameter; 0 (or neither) starts with a snapshot."""
    if last_event_id_header is not None:
        return last_event_id_header
    return last_event_id or 0


LastEventId = Annotated[int, Depends(_last_event_id)]


def frame(event_id: int | None, event_type: str, data: dict[str, Any]) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event_type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _pump(call: Any, queue: asyncio.Queue[Any]) -> None:
    try:
        async for message in call:
            await queue.put(message)
    except grpc.aio.AioRpcError as exc:
        await queue.put(exc)
    finally:
        await queue.put(_END)


def sse_response(call: Any, render: Callable[[Any], tuple[int, str, dict[str, Any]]]) -> EventStreamResponse:
    """Stream `call` (a gRPC server stream) as SSE; `render` turns a message into (id, type, data).

    A comment line every 15 s keeps proxies from closing an idle stream. The gRPC call is
    cancelled when the client goes away. An `error` frame carries no id, so a reconnecting client
    resumes after the last real event."""

    async def body() -> AsyncIterator[str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        pump = asyncio.create_task(_pump(call, queue))
        metrics.SSE_STREAMS.inc()
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is _END:
                    yield frame(None, "end", {})
                    return
                if isinstance(item, grpc.aio.AioRpcError):
                    yield frame(None, "error", {"code": item.code().name, "message": item.details() or ""})
                    return
                yield frame(*render(item))
        finally:
            metrics.SSE_STREAMS.dec()
            pump.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    return EventStreamResponse(body(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
