"""What operators rely on: the bearer token, request ids in responses and in every log line a
request causes (across services), secrets kept out of logs, and /metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.logs import JsonFormatter, configure_logging, service_var
from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack, running_stack
from tests.support.site import small_site

TOKEN = "t0ken-for-tests"


class Lines(logging.Handler):
    """Formats each record as it is logged, while its context (the request id) is current."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_ = JsonFormatter("test")
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # As configure_logging's filter does: the service whose task logged the record.
        record.service = service_var.get() or "test"
        self.entries.append(json.loads(self.formatter_.format(record)))


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every line a process configured with QUAERO_LOG_LEVEL=DEBUG would write."""
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict},
    )
    configure_logging("test", "DEBUG")
    handler = Lines()
    root.handlers[:] = [handler]
    try:
        yield handler
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
async def stack(backend: dict[str, Any]) -> AsyncIterator[Stack]:
    async with running_stack(backend) as s:
        yield s


@pytest.fixture
async def guarded(tmp_path: Any) -> AsyncIterator[Stack]:
    from tests.support.services import common_settings

    async with running_stack({**common_settings(None, tmp_path / "data"), "api_token": TOKEN}) as s:
        yield s


# ---------------------------------------------------------------------------------------- token


@pytest.mark.parametrize("path", ["/api/job-definitions", "/api/jobs/stats", "/metrics", "/openapi.json"])
async def test_without_the_token_every_route_is_401(guarded: Stack, path: str) -> None:
    response = await guarded.http.get(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"]


async def test_a_wrong_token_is_401_saying_so(guarded: Stack) -> None:
    response = await guarded.http.get("/api/job-definitions", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401 and response.json()["error"]["message"] == "wrong API token"


@pytest.mark.parametrize("path", ["/healthz", "/", "/ui/app.js", "/ui/style.css"])
async def test_health_and_the_ui_shell_need_no_token(guarded: Stack, path: str) -> None:
    assert (await guarded.http.get(path)).status_code == 200


async def test_the_token_works_as_a_header_or_as_the_ui_cookie(guarded: Stack) -> None:
    header = await guarded.http.get("/api/job-definitions", headers={"Authorization": f"Bearer {TOKEN}"})
    async with httpx.AsyncClient(base_url=guarded.base_url, cookies={"quaero_token": TOKEN}) as browser:
        cookie = await browser.get("/api/job-definitions")

    assert header.status_code == 200 and cookie.status_code == 200


async def test_openapi_declares_the_bearer_scheme_when_a_token_is_set(guarded: Stack) -> None:
    spec = (await guarded.http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()

    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/healthz"]["get"]["security"] == []


# ---------------------------------------------------------------------------- request ids, logs


async def test_every_log_line_a_request_causes_carries_its_id(stack: Stack, log_lines: Lines) -> None:
    body = {"id": "traced", "name": "Traced", "type": "crawler", "steps": [{"name": "r", "action": "reindex"}]}

    response = await stack.http.post("/api/job-definitions", json=body, headers={"X-Request-ID": "req-42"})

    assert response.status_code == 201 and response.headers["x-request-id"] == "req-42"
    caused = [e for e in log_lines.entries if e.get("request_id") == "req-42"]
    services = {e["service"] for e in caused}
    messages = {e["message"] for e in caused}
    assert "job definition created" in messages  # logged by the executor, behind gRPC
    assert "POST /api/job-definitions 201" in messages  # the gateway's request line
    assert {"gateway", "executor"} <= services


async def test_errors_carry_the_request_id_too(stack: Stack) -> None:
    response = await stack.http.get("/api/job-definitions/ghost", headers={"X-Request-ID": "req-404"})

    assert response.status_code == 404 and response.headers["x-request-id"] == "req-404"


async def test_source_secrets_are_never_returned_or_logged(stack: Stack, log_lines: Lines) -> None:
    async with small_site(2).serve() as site:
        source = {
            "id": "private",
            "name": "Private",
            "base_url": site.url("/"),
            "auth": {"headers": {"Authorization": "Bearer hunter2-secret"}, "cookies": {"sid": "c00kie-secret"}},
        }
        created = await stack.http.post("/api/sources", json=source)
        updated = await stack.http.put("/api/sources/private", json={**source, "name": "Still private"})
        await define(stack, {"id": "with-secrets", "sources": ["private"], "steps": [{"name": "c", "action": "crawl"}]})
        execution = await wait_for(stack, (await execute(stack, "with-secrets"))["execution_id"])
        listed = await stack.http.get("/api/sources")
        jobs = await stack.http.get("/api/jobs", params={"execution_id": execution["id"]})

    assert execution["status"] == "completed"
    for response in (created, updated, listed, jobs):
        assert "hunter2" not in response.text and "c00kie" not in response.text
    everything = json.dumps(log_lines.entries)
    assert "hunter2" not in everything and "c00kie" not in everything
    assert len(log_lines.entries) > 10  # the lines were really captured


# -------------------------------------------------------------------------------------- metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_and_errors_by_route_and_rpc(stack: Stack) -> None:
    before = samples((await stack.http.get("/metrics")).text)

    await stack.http.get("/api/job-definitions/ghost")
    await stack.http.get("/api/job-definitions")
    await stack.http.get("/no/such/route")
    after = samples((await stack.http.get("/metrics")).text)

    route = {"method": "GET", "route": "/api/job-definitions/{id}", "status": "404"}
    rpc = {"service": "executor", "method": "/quaero.v1.ExecutorService/GetJobDefinition", "code": "NOT_FOUND"}
    for name, labels in [
        ("quaero_http_requests_total", route),
        ("quaero_http_errors_total", route),
        ("quaero_http_requests_total", {"method": "GET", "route": "/api/job-definitions", "status": "200"}),
        ("quaero_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}),
        ("quaero_grpc_requests_total", rpc),
        ("quaero_grpc_errors_total", rpc),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == 1, (name, labels)
    assert value(after, "quaero_http_request_duration_seconds_count", method="GET", route="/api/job-definitions") >= 1


async def test_metrics_show_executions_and_crawl_jobs_by_status(stack: Stack) -> None:
    async with small_site(3).serve() as site:
        await define(
            stack, {"id": "m", "steps": [{"name": "c", "action": "crawl", "config": {"start_urls": [site.url("/")]}}]}
        )
        await wait_for(stack, (await execute(stack, "m"))["execution_id"])

    response = await stack.http.get("/metrics")
    metrics = samples(response.text)

    assert response.headers["content-type"].startswith("text/plain")
    assert value(metrics, "quaero_executions", status="completed") == 1
    assert value(metrics, "quaero_executions", status="running") == 0
    assert value(metrics, "quaero_crawl_jobs", status="completed") == 1
    assert value(metrics, "quaero_service_up", service="executor") == 1
    assert value(metrics, "quaero_service_up", service="crawler") == 1


async def test_a_service_that_does_not_answer_gives_504_not_a_hung_request() -> None:
    """A stalled executor must not hold REST clients forever: unary calls carry the gateway's
    deadline (QUAERO_RPC_TIMEOUT) and a missed one answers 504 DEADLINE_EXCEEDED."""
    import asyncio

    from libs.grpc_server import open_channel, start_grpc_server
    from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc
    from services.gateway.app import create_app

    release = asyncio.Event()

    class Stalled(executor_service_pb2_grpc.ExecutorServiceServicer):
        async def ListJobDefinitions(self, request, context):  # type: ignore[no-untyped-def]
            await release.wait()
            raise AssertionError("the gateway should have given up")

    server = await start_grpc_server(
        "127.0.0.1:0",
        [(Stalled(), executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server, "quaero.v1.ExecutorService")],
        service="executor",
    )
    channel = open_channel(f"127.0.0.1:{server.port}", unary_timeout=0.5)
    app = create_app(
        executor_service_pb2_grpc.ExecutorServiceStub(channel), crawler_service_pb2_grpc.CrawlerServiceStub(channel)
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            response = await http.get("/api/job-definitions")
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "DEADLINE_EXCEEDED"
    finally:
        release.set()
        await channel.close()
        await server.stop(0)
