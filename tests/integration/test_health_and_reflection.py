"""Every service answers gRPC health checks and lists its services by reflection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.services import Stack, common_settings, running_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(common_settings(None, tmp_path)) as s:
        yield s


async def list_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        return {s.name for s in response.list_services_response.service}
    return set()


@pytest.mark.parametrize(
    ("port_of", "expected"),
    [
        (lambda s: s.executor_port, "quaero.v1.ExecutorService"),
        (lambda s: s.crawler_port, "quaero.v1.CrawlerService"),
        (lambda s: s.gateway_grpc_port, "grpc.health.v1.Health"),
    ],
    ids=["executor", "crawler", "gateway"],
)
async def test_serving_and_reflected(stack: Stack, port_of, expected: str) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port_of(stack)}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        services = await list_services(channel)
        assert {expected, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        if expected.startswith("quaero"):
            named = await health.Check(health_pb2.HealthCheckRequest(service=expected))
            assert named.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    "port_of", [lambda s: s.executor_port, lambda s: s.gateway_grpc_port], ids=["executor", "gateway"]
)
async def test_health_watch_streams_the_status(stack: Stack, port_of) -> None:  # type: ignore[no-untyped-def]
    """Watch sends with context.write(), not as a generator: the server interceptor must pass it through."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port_of(stack)}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        watch.cancel()

    assert first.status == health_pb2.HealthCheckResponse.SERVING


async def test_domain_errors_answer_with_their_status_code(stack: Stack) -> None:
    from quaero.v1 import crawler_service_pb2

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.crawler.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id="x"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
