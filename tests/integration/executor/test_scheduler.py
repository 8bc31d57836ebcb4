"""Schedules: cron firings through the same execute path, claimed once across replicas, skipped
while the previous scheduled run is still going, rescheduled at once when definitions change."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from libs.db import Database
from services.executor.ledger import AutoStartRow, ScheduleFiringRow
from tests.support.manual_clock import ManualClock
from tests.support.runs import define, wait_for, wait_until
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import small_site

START = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)
REINDEX = [{"name": "reindex", "action": "reindex"}]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.scheduler")


async def loaded(caplog: pytest.LogCaptureFixture, definition_id: str, schedule: str) -> None:
    """Wait until the scheduler has picked up this schedule (the clock must not move before)."""

    async def seen() -> bool:
        return any(
            r.getMessage() == "definition scheduled" and r.job_definition_id == definition_id and r.schedule == schedule
            for r in caplog.records
        )

    await wait_until(seen)


@pytest.fixture
async def scheduled(pg_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Stack]:
    async with running_stack(common_settings(pg_url, tmp_path), clock=clock) as stack:
        yield stack


def at(minute: int, second: int = 0) -> datetime:
    return START.replace(minute=minute, second=second)


async def executions_of(stack: Stack, definition_id: str) -> list[dict[str, Any]]:
    response = await stack.http.get("/api/executions", params={"job_definition_id": definition_id, "order_dir": "asc"})
    return response.json()["executions"]  # type: ignore[no-any-return]


async def firings(stack: Stack) -> list[tuple[str, datetime, str | None, str]]:
    db = Database(stack.database_url, "executor")
    try:
        async with db.read() as session:
            rows = await session.scalars(select(ScheduleFiringRow).order_by(ScheduleFiringRow.fire_at))
            return [(r.job_definition_id, r.fire_at, r.execution_id, r.skipped) for r in rows]
    finally:
        await db.close()


async def test_each_firing_runs_through_execute(
    scheduled: Stack, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await define(scheduled, {"id": "tick", "type": "custom", "schedule": "*/5 * * * *", "steps": REINDEX})
    await loaded(caplog, "tick", "*/5 * * * *")
    await clock.advance_to(at(4, 59))
    assert await executions_of(scheduled, "tick") == []
    for minute in (5, 10, 15):
        await clock.advance_to(at(minute))
        await wait_until(lambda n=minute: _count(scheduled, "tick", n // 5))
        await _all_finished(scheduled, "tick")
    runs = await executions_of(scheduled, "tick")
    assert [(r["trigger"], r["status"]) for r in runs] == [("schedule", "completed")] * 3
    assert [(f[1], f[3]) for f in await firings(scheduled)] == [(at(5), ""), (at(10), ""), (at(15), "")]


async def test_a_firing_that_fails_does_not_stop_the_scheduler(
    scheduled: Stack, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A firing that raises (here its table is briefly gone, like a database hiccup) is logged,
    and later firings still run, in the same scheduler loop (no restart)."""
    await define(scheduled, {"id": "tick", "type": "custom", "schedule": "* * * * *", "steps": REINDEX})
    await loaded(caplog, "tick", "* * * * *")
    await _ddl(scheduled, "ALTER TABLE schedule_firings RENAME TO schedule_firings_away")
    try:
        await clock.advance_to(at(1))
        await wait_until(lambda: _logged(caplog, "scheduled firing failed"))
    finally:
        await _ddl(scheduled, "ALTER TABLE schedule_firings_away RENAME TO schedule_firings")
    await clock.advance_to(at(2))
    [run] = await wait_until(lambda: executions_of(scheduled, "tick"))
    await wait_for(scheduled, run["id"])
    assert [(f[1], f[2]) for f in await firings(scheduled)] == [(at(2), run["id"])]
    assert not await _logged(caplog, "background task failed; restarting")


async def _ddl(stack: Stack, statement: str) -> None:
    db = Database(stack.database_url, "executor")
    try:
        async with db.session() as session:
            await session.execute(text(statement))
    finally:
        await db.close()


async def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return any(r.getMessage() == message for r in caplog.records)


async def _all_finished(stack: Stack, definition_id: str) -> None:
    for run in await executions_of(stack, definition_id):
        await wait_for(stack, run["id"])


async def put(stack: Stack, body: dict[str, Any]) -> None:
    response = await stack.http.put(f"/api/job-definitions/{body['id']}", json=body)
    assert response.status_code == 200, response.text


async def _count(stack: Stack, definition_id: str, n: int) -> bool:
    return len(await executions_of(stack, definition_id)) >= n


async def test_no_catch_up_after_downtime(
    scheduled: Stack, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await define(scheduled, {"id": "tick", "type": "custom", "schedule": "*/5 * * * *", "steps": REINDEX})
    await loaded(caplog, "tick", "*/5 * * * *")
    await clock.advance_to(at(31))  # six firings missed while "down"
    await wait_until(lambda: _count(scheduled, "tick", 1))
    await clock.advance_to(at(31, 30))
    assert len(await executions_of(scheduled, "tick")) == 1


async def test_a_firing_is_skipped_while_the_previous_run_is_running(
    scheduled: Stack, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    slow = small_site(6)
    slow.delay = 0.5
    async with slow.serve():
        steps = [{"name": "crawl", "action": "crawl", "config": {"start_urls": [slow.url()], "concurrency": 1}}]
        await define(scheduled, {"id": "long", "schedule": "* * * * *", "steps": steps})
        await loaded(caplog, "long", "* * * * *")
        await clock.advance_to(at(1))
        [first] = await wait_until(lambda: executions_of(scheduled, "long"))
        await clock.advance_to(at(2))
        await wait_until(lambda: _fired(scheduled, 2))
        assert len(await executions_of(scheduled, "long")) == 1
        recorded = await firings(scheduled)
        assert recorded[1][3] == f"execution {first['id']} still running"
        await wait_for(scheduled, first["id"])
        await clock.advance_to(at(3))
        await wait_until(lambda: _count(scheduled, "long", 2))


async def _scheduled_by(caplog: pytest.LogCaptureFixture, definition_id: str) -> set[str]:
    """The replicas (owners) that have scheduled this definition."""
    return {
        r.owner
        for r in caplog.records
        if r.getMessage() == "definition scheduled" and r.job_definition_id == definition_id
    }


async def _fired(stack: Stack, n: int) -> bool:
    return len(await firings(stack)) >= n


async def test_definitions_changed_at_run_time_are_rescheduled_at_once(
    scheduled: Stack, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"id": "edit", "name": "Edit", "type": "custom", "schedule": "0 * * * *", "steps": REINDEX}
    await define(scheduled, body)
    await put(scheduled, {**body, "schedule": "*/2 * * * *"})
    await loaded(caplog, "edit", "*/2 * * * *")
    await clock.advance_to(at(2))
    await wait_until(lambda: _count(scheduled, "edit", 1))
    await _all_finished(scheduled, "edit")
    await put(scheduled, {**body, "enabled": False})
    await clock.advance_to(at(4))
    await clock.advance_to(at(6))
    assert len(await executions_of(scheduled, "edit")) == 1
    await scheduled.http.delete("/api/job-definitions/edit")
    await clock.advance_to(at(8))
    assert len(await firings(scheduled)) == 1


async def test_auto_start_runs_once_per_version(scheduled: Stack, clock: ManualClock) -> None:
    body = {"id": "boot", "name": "Boot", "type": "custom", "auto_start": True, "steps": REINDEX}
    await define(scheduled, body)
    [run] = await wait_until(lambda: executions_of(scheduled, "boot"))
    assert run["trigger"] == "schedule"
    await clock.advance_to(at(59))  # a reload happens: same version, no second run
    await put(scheduled, body)  # unchanged: same version
    await clock.advance_to(at(59, 40))
    assert len(await executions_of(scheduled, "boot")) == 1
    await put(scheduled, {**body, "description": "v2"})
    await wait_until(lambda: _count(scheduled, "boot", 2))
    second = (await executions_of(scheduled, "boot"))[1]
    # Each version's auto_start names the execution it started.
    expected = [("boot", 1, run["id"]), ("boot", 2, second["id"])]
    await wait_until(lambda: _equals(auto_starts(scheduled), expected))


async def _equals(actual: Awaitable[Any], expected: Any) -> bool:
    return await actual == expected


async def auto_starts(stack: Stack) -> list[tuple[str, int, str | None]]:
    db = Database(stack.database_url, "executor")
    try:
        async with db.read() as session:
            rows = await session.scalars(select(AutoStartRow).order_by(AutoStartRow.version))
            return [(r.job_definition_id, r.version, r.execution_id) for r in rows]
    finally:
        await db.close()


async def test_two_replicas_fire_each_firing_once(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two executors (one schedule each) on one database with one clock: every firing runs once."""
    clock = ManualClock(START)
    common = common_settings(pg_url, tmp_path)
    async with running_stack(common, clock=clock) as one, running_stack(common, clock=clock) as two:
        await define(one, {"id": "shared", "type": "custom", "schedule": "* * * * *", "steps": REINDEX})
        # Both replicas are live and have the schedule (the second learns of it by notification).
        await wait_until(lambda: _two(_scheduled_by(caplog, "shared")))
        for minute in range(1, 7):
            await clock.advance_to(at(minute))
            await wait_until(lambda m=minute: _count(one, "shared", m))
            await _all_finished(one, "shared")
        recorded = await firings(two)
        assert [f[1] for f in recorded] == [at(m) for m in range(1, 7)]
        assert all(f[2] and not f[3] for f in recorded), recorded  # each firing started its execution
        runs = await executions_of(one, "shared")
        assert sorted(r["id"] for r in runs) == sorted(f[2] for f in recorded)  # and nothing else ran
        started = [r for r in caplog.records if r.getMessage() == "scheduled execution started"]
        assert sorted(r.execution_id for r in started) == sorted(f[2] for f in recorded)  # each once


async def _two(owners: Awaitable[set[str]]) -> bool:
    return len(await owners) == 2
