"""The gRPC plumbing of libs/grpc_server.py on a real server: what channels send with each call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from libs.grpc_server import GrpcServer, insecure_channel, start_grpc_server
from libs.logs import REQUEST_ID_HEADER, request_context


def _echo_service() -> grpc.GenericRpcHandler:
    """`test.Echo`, one method of each kind, answering with the request id the call carried."""

    def seen(context: grpc.aio.ServicerContext) -> bytes:
        return dict(context.invocation_metadata() or ()).get(REQUEST_ID_HEADER, "").encode()

    async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return seen(context)

    async def unary_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield seen(context)

    async def stream_unary(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        async for _ in requests:
            pass
        return seen(context)

    async def stream_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield seen(context)

    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "UnaryUnary": grpc.unary_unary_rpc_method_handler(unary_unary),
            "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream),
            "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary),
            "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream),
        },
    )


@pytest.fixture
async def echo() -> AsyncIterator[GrpcServer]:
    registration = (None, lambda _, server: server.add_generic_rpc_handlers((_echo_service(),)), "test.Echo")
    server = await start_grpc_server("127.0.0.1:0", [registration], service="echo")
    try:
        yield server
    finally:
        await server.stop(0)


async def call_each_kind(channel: grpc.aio.Channel) -> dict[str, Any]:
    """What `test.Echo` answers to one call of each kind."""
    answers: dict[str, Any] = {}
    answers["UnaryUnary"] = await channel.unary_unary("/test.Echo/UnaryUnary")(b"")
    answers["UnaryStream"] = [m async for m in channel.unary_stream("/test.Echo/UnaryStream")(b"")]
    answers["StreamUnary"] = await channel.stream_unary("/test.Echo/StreamUnary")(iter([b""]))
    answers["StreamStream"] = [m async for m in channel.stream_stream("/test.Echo/StreamStream")(iter([b""]))]
    return answers


async def test_the_request_id_travels_with_every_kind_of_call(echo: GrpcServer) -> None:
    async with insecure_channel(f"127.0.0.1:{echo.port}") as channel:
        with request_context("rid-42"):
            answers = await call_each_kind(channel)

    assert answers == {
        "UnaryUnary": b"rid-42",
        "UnaryStream": [b"rid-42"],
        "StreamUnary": b"rid-42",
        "StreamStream": [b"rid-42"],
    }
