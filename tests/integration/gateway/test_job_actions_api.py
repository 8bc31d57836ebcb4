"""Changing crawl jobs through the REST API: cancel, rerun, delete, and the 409s when the job's
state forbids it. A gate holds the site's pages back, so a job is reliably still running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from quaero.v1 import executor_service_pb2 as ex
from tests.support.runs import define, execute, jobs, wait_for, wait_until
from tests.support.services import Stack, running_stack
from tests.support.site import LocalSite


@pytest.fixture
async def stack(backend: dict[str, Any]) -> AsyncIterator[Stack]:
    async with running_stack(backend) as s:
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    site = LocalSite()
    site.add("/", "Gated index", ["/one.html"])
    site.add("/one.html", "One")
    site.close()
    async with site.serve():
        try:
            yield site
        finally:
            site.open()


async def start_crawl(stack: Stack, site: LocalSite) -> tuple[str, dict[str, Any]]:
    """Execute a one-step crawl of `site`; returns the execution id and its (running) crawl job."""
    await define(
        stack,
        {"id": "gated", "steps": [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")]}}]},
    )
    execution_id = (await execute(stack, "gated"))["execution_id"]
    found = await wait_until(lambda: jobs(stack, execution_id=execution_id))
    return execution_id, found[0]


async def test_cancel_a_running_job_then_again_is_409(stack: Stack, site: LocalSite) -> None:
    execution_id, job = await start_crawl(stack, site)

    cancelled = await stack.http.post(f"/api/jobs/{job['id']}/cancel")
    again = await stack.http.post(f"/api/jobs/{job['id']}/cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["id"] == job["id"]
    assert again.status_code == 409 and again.json()["error"]["code"] == "ABORTED"
    assert (await wait_for(stack, execution_id))["status"] == "failed"  # a cancelled crawl fails its step


async def test_delete_a_running_job_is_409_and_a_finished_one_204(stack: Stack, site: LocalSite) -> None:
    execution_id, job = await start_crawl(stack, site)

    while_running = await stack.http.delete(f"/api/jobs/{job['id']}")
    site.open()
    await wait_for(stack, execution_id)
    deleted = await stack.http.delete(f"/api/jobs/{job['id']}")

    assert while_running.status_code == 409 and while_running.json()["error"]["code"] == "ABORTED"
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await stack.http.get(f"/api/jobs/{job['id']}")).status_code == 404


async def test_rerun_is_201_and_the_new_job_really_runs(stack: Stack, site: LocalSite) -> None:
    site.open()
    execution_id, job = await start_crawl(stack, site)
    await wait_for(stack, execution_id)

    response = await stack.http.post(f"/api/jobs/{job['id']}/rerun")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["original_job_id"] == job["id"] and body["new_job_id"] != job["id"]
    assert response.headers["location"] == f"/api/jobs/{body['new_job_id']}"

    async def finished() -> dict[str, Any] | None:
        rerun = (await stack.http.get(f"/api/jobs/{body['new_job_id']}")).json()
        return rerun if rerun["status"] in ("completed", "failed", "cancelled") else None

    rerun = await wait_until(finished, timeout=60)
    assert rerun["status"] == "completed" and rerun["result_count"] == 2
    assert rerun["metadata"]["rerun_of"] == job["id"]
    assert rerun["metadata"]["job_definition_id"] == "gated"


@pytest.mark.parametrize("action", ["cancel", "rerun"])
async def test_actions_on_an_unknown_job_are_404(stack: Stack, action: str) -> None:
    response = await stack.http.post(f"/api/jobs/ghost/{action}")

    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


async def test_execute_records_the_cli_trigger(stack: Stack, site: LocalSite) -> None:
    site.open()
    await define(
        stack, {"id": "t", "steps": [{"name": "c", "action": "crawl", "config": {"start_urls": [site.url("/")]}}]}
    )

    started = await stack.http.post("/api/job-definitions/t/execute", params={"trigger": "cli"})
    plain = await stack.http.post("/api/job-definitions/t/execute")
    refused = await stack.http.post("/api/job-definitions/t/execute", params={"trigger": "schedule"})

    assert started.status_code == 202 and plain.status_code == 202
    assert (await wait_for(stack, started.json()["execution_id"]))["trigger"] == "cli"
    assert (await wait_for(stack, plain.json()["execution_id"]))["trigger"] == "api"
    assert refused.status_code == 400 and refused.json()["error"]["details"][0]["field"] == "trigger"


async def test_execution_events_resumed_mid_run_lose_nothing(stack: Stack, site: LocalSite) -> None:
    execution_id, _ = await start_crawl(stack, site)
    url = f"/api/executions/{execution_id}/events"
    seen: list[int] = []
    async with stack.http.stream("GET", url) as response:
        lines = response.aiter_lines()
        async for line in lines:  # the snapshot first, while the site holds the crawl
            if line.startswith("id: "):
                snapshot = int(line[4:])
                break
        site.open()
        async for line in lines:  # one live event, then the client goes away
            if line.startswith("id: "):
                seen.append(int(line[4:]))
                break
    await wait_for(stack, execution_id)

    resumed = await stack.http.get(url, headers={"Last-Event-ID": str(seen[-1])})
    seen += [int(line[4:]) for line in resumed.text.splitlines() if line.startswith("id: ")]
    everything = [
        m.event.id async for m in stack.executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id, replay=True))
    ]

    after_the_end = await stack.http.get(url, headers={"Last-Event-ID": str(seen[-1])})

    assert seen == [i for i in everything if i > snapshot]
    assert after_the_end.status_code == 204
