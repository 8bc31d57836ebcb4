"""Server-Sent Events from a gRPC watch stream, resumable with Last-Event-ID.

Each event's SSE id is its event row id (the snapshot's is the last event folded into it), so a
client that reconnects with `Last-Event-ID` gets every later event and loses none. The stream
closes after the terminal event (or after the snapshot of a finished resource). A browser then
reconnects with the last id; for a finished resource with nothing after that id the answer is
204, which tells EventSource to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import grpc
from fastapi import Depends, Header, Query
from fastapi.responses import Response, StreamingResponse

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


def _headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def sse_response(
    call: Any, render: Callable[[Any], tuple[int, str, dict[str, Any]]], *, finished: bool
) -> Response:
    """Stream `call` (a gRPC server stream) as SSE; `render` turns a message into (id, type, data).

    `finished`: the resource had ended when the request came. Its stream is then short and
    already complete, so it is read first: nothing left to send is a 204.

    Otherwise a comment line every 15 s keeps proxies from closing an idle stream, and the gRPC
    call is cancelled when the client goes away. An `error` frame carries no id, so a
    reconnecting client resumes after the last real event."""
    if finished:
        try:
            messages = [message async for message in call]
        except grpc.aio.AioRpcError as exc:
            messages, failure = [], exc
        else:
            failure = None
        if not messages and failure is None:
            return Response(status_code=204, headers=_headers())

        async def replay() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            for message in messages:
                yield frame(*render(message))
            if failure is not None:
                yield frame(None, "error", {"code": failure.code().name, "message": failure.details() or ""})

        return EventStreamResponse(replay(), headers=_headers())

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

    return EventStreamResponse(body(), headers=_headers())
