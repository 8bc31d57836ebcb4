"""The executor's hardening (issue 15): a retried TriggerPostJobs keeps a started post-job
triggered, finished executions have final steps, a schedule that never fires is refused and a
stored one skipped, a reload that fails backs off, a driver fault fails its execution, and
enum numbers this release does not know are refused naming their field."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from libs.db import Database, utcnow
from quaero.v1 import executor_service_pb2 as ex
from quaero.v1 import job_definition_pb2 as jd
from services.executor import runner as runner_module
from services.executor.ledger import ExecutionRow
from services.executor.model import TERMINAL
from services.executor.scheduler import RELOAD_BACKOFF_MAX, Scheduler
from tests.support.manual_clock import ManualClock
from tests.support.runs import define, execute, get_execution, wait_for, wait_until
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite, small_site

REINDEX = [{"name": "reindex", "action": "reindex"}]


def crawl(url: str, **config: Any) -> dict[str, Any]:
    return {"name": "crawl", "action": "crawl", "config": {"start_urls": [url], "max_depth": 2, **config}}


async def _sql(stack: Stack, statement: str, **params: Any) -> None:
    db = Database(stack.database_url, "executor")
    try:
        async with db.session() as session:
            await session.execute(text(statement), params)
    finally:
        await db.close()


# --------------------------------------------------------------------- post-jobs (point 3)


@pytest.mark.parametrize("meanwhile", ["disabled", "deleted"])
async def test_a_retried_trigger_records_a_started_post_job_as_triggered(stack: Stack, meanwhile: str) -> None:
    """The executor died between starting the child and recording the outcomes; the post-job's
    definition was disabled or deleted before TriggerPostJobs was retried. The child exists, so
    it is triggered, never skipped."""
    await define(stack, {"id": "after", "type": "custom", "steps": REINDEX})
    await define(stack, {"id": "before", "type": "custom", "steps": REINDEX, "post_jobs": ["after"]})
    db = Database(stack.database_url, "executor")
    try:
        async with db.session() as session:
            common = {"trigger": "api", "steps": [], "post_jobs": {}, "created_at": utcnow()}
            session.add(
                ExecutionRow(
                    id="stuck-parent", job_definition_id="before", job_name="Before", status="running",
                    definition={"post_jobs": ["after"], "steps": REINDEX}, lineage=[], post_jobs_state="pending",
                    updated_at=utcnow() - timedelta(minutes=5), **common,
                )
            )  # fmt: skip
            session.add(
                ExecutionRow(
                    id="started-child", job_definition_id="after", job_name="After", status="completed",
                    definition={"steps": REINDEX}, lineage=["before"], parent_execution_id="stuck-parent",
                    post_jobs_state="none", updated_at=utcnow(), **common,
                )
            )  # fmt: skip
    finally:
        await db.close()
    if meanwhile == "disabled":
        body = {"id": "after", "name": "After", "type": "custom", "steps": REINDEX, "enabled": False}
        response = await stack.http.put("/api/job-definitions/after", json=body)
    else:
        response = await stack.http.delete("/api/job-definitions/after")
    assert response.status_code in (200, 204), response.text

    answer = await stack.executor.TriggerPostJobs(ex.TriggerPostJobsRequest(parent_execution_id="stuck-parent"))
    assert [(t.job_definition_id, t.execution_id) for t in answer.post_jobs.triggered] == [("after", "started-child")]
    assert list(answer.post_jobs.skipped) == []
    parent = await get_execution(stack, "stuck-parent")
    assert parent["status"] == "completed"
    assert parent["post_jobs"]["skipped"] == []


async def test_trigger_post_jobs_on_a_completed_execution_without_post_jobs_is_ok(stack: Stack) -> None:
    await define(stack, {"id": "alone", "type": "custom", "steps": REINDEX})
    done = await wait_for(stack, (await execute(stack, "alone"))["execution_id"])
    assert done["status"] == "completed"
    answer = await stack.executor.TriggerPostJobs(ex.TriggerPostJobsRequest(parent_execution_id=done["id"]))
    assert (list(answer.post_jobs.triggered), list(answer.post_jobs.skipped)) == ([], [])


# ------------------------------------------------------------------ final steps (point 4)


async def test_a_cancelled_execution_has_only_final_steps(stack: Stack) -> None:
    slow = small_site(8)
    slow.delay = 0.4
    async with slow.serve():
        steps = [crawl(slow.url(), concurrency=1), *REINDEX]
        await define(stack, {"id": "long", "steps": steps})
        execution_id = (await execute(stack, "long"))["execution_id"]
        await wait_for(stack, execution_id, {"running"})
        await asyncio.sleep(0.5)
        response = await stack.http.post(f"/api/executions/{execution_id}/cancel")
        assert response.status_code == 200, response.text
        done = await wait_for(stack, execution_id)
    assert done["status"] == "cancelled"
    assert [s["status"] for s in done["steps"]] == ["cancelled", "cancelled"]
    # And it stays so: nothing the stopped driver writes afterwards reopens a step.
    await asyncio.sleep(0.5)
    assert [s["status"] for s in (await get_execution(stack, execution_id))["steps"]] == ["cancelled", "cancelled"]


async def test_a_timeout_during_a_retry_backoff_fails_the_step(stack: Stack, site: LocalSite) -> None:
    step = {**crawl(site.url("/missing"), max_retries=3, initial_backoff=30), "on_error": "retry"}
    await define(stack, {"id": "flaky", "steps": [step, *REINDEX], "timeout": "2s"})
    execution_id = (await execute(stack, "flaky"))["execution_id"]
    await wait_until(lambda: _step_status(stack, execution_id, "retrying"))
    done = await wait_for(stack, execution_id)
    assert (done["status"], done["error"]["code"]) == ("failed", "timeout")
    assert [s["status"] for s in done["steps"]] == ["failed", "cancelled"]
    assert all(s["status"] in TERMINAL for s in done["steps"])


async def _step_status(stack: Stack, execution_id: str, status: str) -> bool:
    return (await get_execution(stack, execution_id))["steps"][0]["status"] == status


# ------------------------------------------------------------------- schedules (point 6)


@pytest.mark.parametrize("schedule", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"])
async def test_a_schedule_that_never_fires_is_refused_naming_the_field(stack: Stack, schedule: str) -> None:
    body = {"id": "never", "name": "Never", "type": "custom", "schedule": schedule, "steps": REINDEX}
    response = await stack.http.post("/api/job-definitions", json=body)
    assert response.status_code == 400, response.text
    assert "schedule" in response.text and "never fires" in response.text
    assert (await stack.http.get("/api/job-definitions/never")).status_code == 404


START = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)


async def test_a_stored_schedule_that_never_fires_leaves_the_others_scheduled(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.scheduler")
    clock = ManualClock(START)
    async with running_stack(common_settings(pg_url, tmp_path), clock=clock) as stack:
        await define(stack, {"id": "bad", "type": "custom", "schedule": "0 * * * *", "steps": REINDEX})
        # Stored before such schedules were refused.
        await _sql(stack, "UPDATE job_definitions SET schedule = '0 0 31 2 *' WHERE id = 'bad'")
        await define(stack, {"id": "tick", "type": "custom", "schedule": "*/5 * * * *", "steps": REINDEX})

        async def scheduled() -> bool:
            return any(
                r.getMessage() == "definition scheduled" and r.job_definition_id == "tick" for r in caplog.records
            )

        await wait_until(scheduled)
        await clock.advance_to(START.replace(minute=5, second=0))
        runs = await wait_until(lambda: _executions_of(stack, "tick"))
        await wait_for(stack, runs[0]["id"])
        skipped = [r for r in caplog.records if r.getMessage() == "definition not scheduled: its schedule never fires"]
        assert [r.job_definition_id for r in skipped] == ["bad"]  # once, not on every reload


async def _executions_of(stack: Stack, definition_id: str) -> list[dict[str, Any]]:
    response = await stack.http.get("/api/executions", params={"job_definition_id": definition_id})
    return response.json()["executions"]  # type: ignore[no-any-return]


class _BrokenStore:
    """A definitions store whose every read fails (the database away for good)."""

    def __init__(self) -> None:
        self.reads = 0

    async def all_definitions(self) -> list[Any]:
        self.reads += 1
        raise ConnectionError("the database is away")


async def test_a_reload_that_keeps_failing_backs_off() -> None:
    """Pure logic (the store is a stand-in): reads are spaced 1, 2, 4... seconds apart, up to
    RELOAD_BACKOFF_MAX, never retried at once."""
    clock = ManualClock(START)
    store = _BrokenStore()
    scheduler = Scheduler(store, ledger=None, executions=None, clock=clock)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.create_task(scheduler._loop(stop))
    try:
        await wait_until(lambda: _at_least(store, 1))
        for _ in range(20):  # the loop gets every chance to spin
            await asyncio.sleep(0)
        assert store.reads == 1
        elapsed = 0.0
        for n in range(1, 9):
            delay = min(RELOAD_BACKOFF_MAX, 2.0 ** (n - 1))
            elapsed += delay
            await clock.advance_to(START + timedelta(seconds=elapsed - 0.01))
            for _ in range(20):
                await asyncio.sleep(0)
            assert store.reads == n
            await clock.advance_to(START + timedelta(seconds=elapsed))
            await wait_until(lambda n=n: _at_least(store, n + 1))
    finally:
        stop.set()
        scheduler._wake.set()
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def _at_least(store: _BrokenStore, n: int) -> bool:
    return store.reads >= n


# ------------------------------------------------------------- driver faults (point 10)


async def test_a_fault_in_the_driver_fails_the_execution(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the executor (here injected into the runner) must not leave the execution running
    for ever, resumed and failing again on every orphan pass."""

    async def broken(self: Any, execution: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(runner_module.Runner, "_run", broken)
    await define(stack, {"id": "buggy", "type": "custom", "steps": REINDEX})
    done = await wait_for(stack, (await execute(stack, "buggy"))["execution_id"], timeout=20)
    assert (done["status"], done["error"]["code"]) == ("failed", "internal")
    assert "ValueError" in done["error"]["message"]
    assert [s["status"] for s in done["steps"]] == ["failed"]  # it was running: it fails with the execution


# --------------------------------------------------------------------- enums (point 14)


async def test_unknown_enum_numbers_are_invalid_arguments_naming_the_field(stack: Stack) -> None:
    await define(stack, {"id": "known", "type": "custom", "steps": REINDEX})
    cases: list[tuple[Any, Any, str]] = [
        (
            stack.executor.ExecuteJobDefinition,
            ex.ExecuteJobDefinitionRequest(job_definition_id="known", trigger=42),  # type: ignore[arg-type]
            "trigger",
        ),
        (stack.executor.ListExecutions, ex.ListExecutionsRequest(status=99), "status"),
        (
            stack.executor.CreateJobDefinition,
            ex.CreateJobDefinitionRequest(
                job_definition=jd.JobDefinition(
                    id="odd", name="Odd", type=jd.JOB_DEFINITION_TYPE_CUSTOM,
                    steps=[jd.JobStep(name="r", action="reindex", on_error=99)],
                )
            ),
            "on_error",
        ),
    ]  # fmt: skip
    for call, request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
        assert field in (err.value.details() or ""), (field, err.value.details())
    assert await _executions_of(stack, "known") == []
    assert (await stack.http.get("/api/job-definitions/odd")).status_code == 404
