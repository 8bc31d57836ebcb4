"""libs/grpc_server.py on real servers: what channels send with each call, and access to the
ports: with QUAERO_API_TOKEN set every method but health checking requires it, every internal
caller sends it, and TLS is one setting away (QUAERO_GRPC_TLS_*)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cli.up import start_service
from libs.grpc_server import GrpcAccess, GrpcServer, open_channel, start_grpc_server
from libs.logs import REQUEST_ID_HEADER, request_context
from services.crawler import server as crawler_server
from services.crawler.settings import CrawlerSettings
from services.executor import server as executor_server
from services.executor.settings import ExecutorSettings
from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack, common_settings, migrate_for, running, running_stack
from tests.support.site import LocalSite, small_site

TOKEN = "grpc-s3cret"
HEALTH = "grpc.health.v1.Health"
ROOT = Path(__file__).resolve().parents[3]


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


@contextlib.asynccontextmanager
async def echo_server(token: str | None) -> AsyncIterator[GrpcServer]:
    registration = (None, lambda _, server: server.add_generic_rpc_handlers((_echo_service(),)), "test.Echo")
    server = await start_grpc_server("127.0.0.1:0", [registration], service="echo", access=GrpcAccess(token=token))
    try:
        yield server
    finally:
        await server.stop(0)


# The four kinds of call, and the channel method making each.
KINDS = {
    "UnaryUnary": "unary_unary",
    "UnaryStream": "unary_stream",
    "StreamUnary": "stream_unary",
    "StreamStream": "stream_stream",
}


async def echo_call(channel: grpc.aio.Channel, kind: str) -> Any:
    """What `test.Echo` answers to one call of `kind` (a list of messages when it streams them)."""
    multicallable = getattr(channel, KINDS[kind])(f"/test.Echo/{kind}")
    request = iter([b""]) if kind.startswith("Stream") else b""
    if kind.endswith("Stream"):
        return [message async for message in multicallable(request)]
    return await multicallable(request)


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open server", "server requiring a token"])
async def test_the_request_id_and_the_token_travel_with_every_kind_of_call(token: str | None) -> None:
    async with (
        echo_server(token) as server,
        open_channel(f"127.0.0.1:{server.port}", GrpcAccess(token=TOKEN)) as channel,
    ):
        with request_context("rid-42"):
            answers = {kind: await echo_call(channel, kind) for kind in KINDS}

    assert answers == {
        "UnaryUnary": b"rid-42",
        "UnaryStream": [b"rid-42"],
        "StreamUnary": b"rid-42",
        "StreamStream": [b"rid-42"],
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_server_with_a_token_refuses_every_kind_of_call_without_it(kind: str) -> None:
    async with echo_server(TOKEN) as server, open_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await echo_call(channel, kind)

    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "an API token is required: send `authorization: Bearer <token>` metadata"


# ------------------------------------------------------------------------------ the services


def self_signed(directory: Path) -> dict[str, Path]:
    """A certificate for localhost and 127.0.0.1, signed by its own key: the TLS settings naming it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quaero-test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, private = directory / "grpc.crt", directory / "grpc.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {"grpc_tls_cert": cert, "grpc_tls_key": private, "grpc_tls_ca": cert}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack({**common_settings(None, tmp_path / "data"), "api_token": TOKEN}) as s:
        s.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield s


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    return self_signed(tmp_path)


@pytest.fixture
async def over_tls(tmp_path: Path, tls_files: dict[str, Path]) -> AsyncIterator[Stack]:
    async with running_stack({**common_settings(None, tmp_path / "data"), "api_token": TOKEN, **tls_files}) as s:
        s.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with small_site(3).serve() as s:
        yield s


def ports(stack: Stack) -> dict[str, int]:
    return {"executor": stack.executor_port, "crawler": stack.crawler_port, "gateway": stack.gateway_grpc_port}


async def reflected_services(channel: grpc.aio.Channel, metadata: Any = None) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request]), metadata=metadata):
        return {s.name for s in response.list_services_response.service}
    return set()


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, metadata: Any) -> None:
    """Call any method with an empty request, whatever its kind; raises the call's error."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request = message_factory.GetMessageClass(method.input_type)()
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    multicallable = kind(path, request_serializer=type(request).SerializeToString)
    arg = iter([request]) if method.client_streaming else request
    if method.server_streaming:
        async for _ in multicallable(arg, metadata=metadata, timeout=10):
            pass
    else:
        await multicallable(arg, metadata=metadata, timeout=10)


# Each server's API, found by reflection (asked with the token), so a method or a service added
# later is covered without touching this test.
async def every_method(port: int, access: GrpcAccess) -> list[MethodDescriptor]:
    async with open_channel(f"127.0.0.1:{port}", access) as channel:
        names = await reflected_services(channel)
    pool = descriptor_pool.Default()
    return [m for name in sorted(names - {HEALTH}) for m in pool.FindServiceByName(name).methods]


PRESENTED = {
    "no token": (None, "an API token is required"),
    "wrong token": ((("authorization", "Bearer not-the-token"),), "wrong API token"),
    "token of another scheme": ((("authorization", f"Basic {TOKEN}"),), "an API token is required"),
}


async def test_every_method_but_health_refuses_a_caller_without_the_token(guarded: Stack) -> None:
    refused: dict[str, dict[str, tuple[grpc.StatusCode, bool]]] = {}
    for server, port in ports(guarded).items():
        methods = await every_method(port, guarded.access)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for presented, (metadata, message) in PRESENTED.items():
                for method in methods:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await call(channel, method, metadata)
                    result = (err.value.code(), message in (err.value.details() or ""))
                    refused.setdefault(server, {})[f"{method.full_name} ({presented})"] = result

    # Reflection found each server's API (so the loop above was not empty)...
    methods = {server: {name.rsplit(".", 2)[-2] for name in results} for server, results in refused.items()}
    assert methods == {
        "executor": {"ExecutorService", "ServerReflection"},
        "crawler": {"CrawlerService", "ServerReflection"},
        "gateway": {"ServerReflection"},
    }
    # ...and every method of it refused every caller, saying why.
    wrong = {
        (server, name): r
        for server, results in refused.items()
        for name, r in results.items()
        if r != (grpc.StatusCode.UNAUTHENTICATED, True)
    }
    assert wrong == {}


async def test_health_checking_answers_without_the_token(guarded: Stack) -> None:
    statuses = {}
    for server, port in ports(guarded).items():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            checked = await health.Check(health_pb2.HealthCheckRequest())
            watch = health.Watch(health_pb2.HealthCheckRequest())
            watched = await watch.read()
            watch.cancel()
        statuses[server] = (checked.status, watched.status)

    serving = health_pb2.HealthCheckResponse.SERVING
    assert statuses == {server: (serving, serving) for server in ports(guarded)}


async def test_every_internal_caller_sends_the_token(guarded: Stack, site: LocalSite) -> None:
    """Gateway -> executor -> crawler (ListActions, RunSteps), the executor's TriggerPostJobs to
    itself, the gateway's watch streams: a crawl and its post-job complete, and their events read."""
    await define(guarded, {"id": "after", "type": "custom", "steps": [{"name": "reindex", "action": "reindex"}]})
    steps = [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url()], "max_depth": 1}}]
    await define(guarded, {"id": "crawl", "steps": steps, "post_jobs": ["after"]})

    parent = await wait_for(guarded, (await execute(guarded, "crawl"))["execution_id"])
    [triggered] = parent["post_jobs"]["triggered"]
    child = await wait_for(guarded, triggered["execution_id"])
    documents = (await guarded.http.get("/api/documents")).json()
    execution_events = await guarded.http.get(f"/api/executions/{parent['id']}/events")
    job_events = await guarded.http.get(f"/api/jobs/{parent['steps'][0]['crawl_job_ids'][0]}/events")

    assert (parent["status"], child["status"]) == ("completed", "completed")
    assert documents["total_count"] == 4
    assert execution_events.status_code == job_events.status_code == 200
    assert "event: snapshot" in execution_events.text and "event: snapshot" in job_events.text


async def test_over_tls_the_stack_works_and_plaintext_is_refused(over_tls: Stack, site: LocalSite) -> None:
    steps = [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url()], "max_depth": 1}}]
    await define(over_tls, {"id": "crawl", "steps": steps})

    execution = await wait_for(over_tls, (await execute(over_tls, "crawl"))["execution_id"])

    assert execution["status"] == "completed"
    for port in ports(over_tls).values():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_over_tls_the_token_is_still_required(over_tls: Stack) -> None:
    without_token = GrpcAccess(roots=over_tls.access.roots)
    async with open_channel(f"127.0.0.1:{over_tls.executor_port}", without_token) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await reflected_services(channel)

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_container_probe_speaks_tls_when_the_services_do(over_tls: Stack, tls_files: dict[str, Path]) -> None:
    """`python -m libs.healthcheck` reads the same QUAERO_GRPC_TLS_* variables as the services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
    env.update({f"QUAERO_{k.upper()}": str(v) for k, v in tls_files.items()})

    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "libs.healthcheck", f"127.0.0.1:{over_tls.crawler_port}", cwd=ROOT, env=env
    )

    assert await probe.wait() == 0


async def test_an_executor_with_another_token_than_the_crawler_stops_saying_so(tmp_path: Path) -> None:
    common = common_settings(None, tmp_path / "data")
    await migrate_for(common)
    crawler = CrawlerSettings(**common, crawler_port=0, api_token=TOKEN)
    async with running(lambda s, r: crawler_server.serve(crawler, s, r), "crawler") as crawler_port:
        executor = ExecutorSettings(
            **common, executor_port=0, crawler_addr=f"127.0.0.1:{crawler_port}", api_token="another-token"
        )
        with pytest.raises(RuntimeError) as err:
            await start_service("executor", lambda s, r: executor_server.serve(executor, s, r), asyncio.Event(), 60)

    assert str(err.value) == (
        "the crawler refused this executor's API token (wrong API token): give both the same QUAERO_API_TOKEN"
    )
