"""gRPC clients without the token: whoever reaches the ports of a stack with QUAERO_API_TOKEN set
can neither make it fetch for them (RunSteps with an invented execution and injected auth
headers) nor change what it holds (DeleteJobDefinition)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc, executor_service_pb2, executor_service_pb2_grpc
from tests.support.crawler import source, step_call
from tests.support.hostile import health_answers
from tests.support.runs import define
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite, small_site

TOKEN = "hostile-test-s3cret"

# What a caller presents: nothing, a guess, the token cut short or lengthened, another scheme.
PRESENTED: dict[str, Any] = {
    "no token": None,
    "wrong token": (("authorization", "Bearer guess"),),
    "token cut short": (("authorization", f"Bearer {TOKEN[:-1]}"),),
    "token lengthened": (("authorization", f"Bearer {TOKEN}x"),),
    "another scheme": (("authorization", f"Basic {TOKEN}"),),
}


# Attempts are repeated, as a guesser would, until /healthz has answered a few times meanwhile.
HEALTH_ANSWERS = 3
MAX_ATTEMPTS = 200


async def refused_while_healthy(
    stack: Stack, attempt: Callable[[Any], Awaitable[Any]]
) -> dict[str, set[grpc.StatusCode]]:
    """Make `attempt(metadata)` with each of PRESENTED again and again while /healthz is watched;
    the codes each failed with."""
    codes: dict[str, set[grpc.StatusCode]] = {}
    async with health_answers(stack.base_url) as watch:
        for name, metadata in PRESENTED.items():
            answers = watch.answers
            for _ in range(MAX_ATTEMPTS):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await attempt(metadata)
                codes.setdefault(name, set()).add(_refusal(err.value))
                if watch.answers - answers >= HEALTH_ANSWERS:
                    break
    return codes


def _refusal(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """The code a call was refused with. A stream the server closes before reading it can fail on
    the client's side instead, sending its first request into the closed call ("Internal error
    from Core", a failed SendMessageOperation): refused all the same, before anything was sent."""
    if error.code() == grpc.StatusCode.INTERNAL and "SendMessageOperation" in (error.debug_error_string() or ""):
        return grpc.StatusCode.UNAUTHENTICATED
    return error.code()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack({**common_settings(None, tmp_path / "data"), "api_token": TOKEN}) as s:
        s.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with small_site(2).serve() as s:
        yield s


async def run_steps(stub: crawler_service_pb2_grpc.CrawlerServiceStub, call: Any, metadata: Any) -> list[Any]:
    async def requests() -> AsyncIterator[crawler_service_pb2.RunStepsRequest]:
        yield crawler_service_pb2.RunStepsRequest(call=call)

    return [response async for response in stub.RunSteps(requests(), metadata=metadata, timeout=10)]


async def test_run_steps_with_injected_auth_headers_is_refused_and_fetches_nothing(
    stack: Stack, site: LocalSite
) -> None:
    invented = step_call(
        {"max_depth": 1},
        sources=[source("victim", site.url(), auth={"headers": {"Authorization": "Bearer stolen", "X-Api-Key": "k"}})],
        execution_id=uuid.uuid4().hex,
        job_definition_id="invented",
    )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.crawler_port}") as channel:
        stub = crawler_service_pb2_grpc.CrawlerServiceStub(channel)
        codes = await refused_while_healthy(stack, lambda metadata: run_steps(stub, invented, metadata))

    assert codes == {name: {grpc.StatusCode.UNAUTHENTICATED} for name in PRESENTED}
    jobs = (await stack.http.get("/api/jobs")).json()
    assert jobs["total_count"] == 0
    assert site.requests == []


async def test_delete_job_definition_is_refused_and_the_definition_stays(stack: Stack) -> None:
    await define(stack, {"id": "keep-me", "type": "custom", "steps": [{"name": "reindex", "action": "reindex"}]})

    request = executor_service_pb2.DeleteJobDefinitionRequest(id="keep-me")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.executor_port}") as channel:
        stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
        codes = await refused_while_healthy(
            stack, lambda metadata: stub.DeleteJobDefinition(request, metadata=metadata, timeout=10)
        )

    assert codes == {name: {grpc.StatusCode.UNAUTHENTICATED} for name in PRESENTED}
    assert (await stack.http.get("/api/job-definitions/keep-me")).status_code == 200
