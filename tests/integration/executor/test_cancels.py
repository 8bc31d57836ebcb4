"""Durable cancels (issue 15, point 2): a cancelled or timed-out execution's crawl jobs end
cancelled even when the replica that took the cancel dies at once (nothing in its memory is
needed) and the crawler is away for longer than any in-memory retry would have waited."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from libs.db import Database, utcnow
from libs.grpc_server import open_channel
from quaero.v1 import crawler_service_pb2_grpc
from services.executor.cancels import CANCELS, CancelPolicy, CrawlCancels
from services.executor.ledger import ExecutionRow, Ledger
from services.executor.model import StepState
from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    run_step,
    running_crawler,
    status_name,
    step_call,
    wait_for_status,
)
from tests.support.runs import wait_until
from tests.support.services import common_settings

FAST = CancelPolicy(poll=0.05, initial_backoff=0.05, max_backoff=0.2, rpc_timeout=2.0)


@pytest.fixture
def common(tmp_path: Path) -> dict[str, Any]:
    return common_settings(None, tmp_path / "data")


@pytest.fixture
def backend(common: dict[str, Any]) -> dict[str, Any]:
    """SQLite, beside a crawler on SQLite (the crawler restarts on its port in these tests)."""
    return common


async def _running_execution(db: Database, execution_id: str) -> None:
    steps = [StepState(index=0, name="crawl", action="crawl", status="running", attempts=1).to_json()]
    async with db.session() as session:
        session.add(
            ExecutionRow(
                id=execution_id, job_definition_id="docs", job_name="Docs", definition={"steps": []},
                status="running", trigger="api", lineage=[], steps=steps, post_jobs_state="none", post_jobs={},
                created_at=utcnow(), updated_at=utcnow(),
            )
        )  # fmt: skip


async def _pending(db: Database) -> list[Any]:
    async with db.read() as session:
        return list((await session.execute(select(CANCELS))).all())


async def test_a_cancel_outlasts_its_replica_and_a_long_crawler_outage(
    common: dict[str, Any], executor_db: Database
) -> None:
    execution_id = str(uuid.uuid4())
    settings = crawler_settings(common)
    async with running_crawler(settings, run_workers=False) as crawler:  # no workers: the job stays running
        call = step_call(
            {"start_urls": ["http://127.0.0.1:9/"], "wait_for_completion": False}, execution_id=execution_id
        )
        [job_id] = accepted_ids(await run_step(crawler.stub, call))
        port = crawler.port
    # The crawler is down. The replica that takes the cancel writes the ledger and dies: only
    # what the ledger holds remains.
    await _running_execution(executor_db, execution_id)
    await Ledger(executor_db).cancel(execution_id)
    [row] = await _pending(executor_db)
    assert (row.execution_id, row.reason) == (execution_id, "cancelled")

    # Another replica's loop, against the crawler that is away: it keeps trying, spaced out.
    channel = open_channel(f"127.0.0.1:{port}")
    other = CrawlCancels(executor_db, crawler_service_pb2_grpc.CrawlerServiceStub(channel), FAST)
    stop = asyncio.Event()
    loop = asyncio.create_task(other.run(stop))
    try:
        async with executor_db.session() as session:  # due now, not after the grace the dead replica had
            await session.execute(update(CANCELS).values(next_attempt_at=utcnow()))
        await wait_until(lambda: _attempts_at_least(executor_db, 8), timeout=60)
        async with running_crawler(crawler_settings(common, crawler_port=port), run_workers=False) as back:
            await wait_until(lambda: _none_pending(executor_db), timeout=60)  # confirmed, so deleted
            assert status_name(await wait_for_status(back.stub, job_id)) == "cancelled"
    finally:
        stop.set()
        other.wake()
        await loop
        await channel.close()


async def _attempts_at_least(db: Database, n: int) -> bool:
    rows = await _pending(db)
    return bool(rows) and rows[0].attempts >= n


async def _none_pending(db: Database) -> bool:
    return not await _pending(db)


async def test_a_timeout_records_a_durable_cancel_and_a_plain_failure_does_not(executor_db: Database) -> None:
    from services.executor.ledger import _execution  # the stored row as the runner holds it

    ledger = Ledger(executor_db)
    for code in ("timeout", "step_failed"):
        execution_id = str(uuid.uuid4())
        await _running_execution(executor_db, execution_id)
        async with executor_db.read() as session:
            stored = (
                await session.execute(select(ExecutionRow.__table__).where(ExecutionRow.id == execution_id))
            ).first()
        assert await ledger.finish(_execution(stored), None, "failed", code, f"{code} happened")
    assert [(r.reason, r.attempts) for r in await _pending(executor_db)] == [("timeout", 0)]


async def test_the_loop_ends_when_stopped_without_waiting_out_its_poll(executor_db: Database) -> None:
    # Every executor runs this loop: its poll period must not add to every shutdown.
    cancels = CrawlCancels(executor_db, crawler=None, policy=CancelPolicy(poll=3600))
    stop = asyncio.Event()
    loop = asyncio.create_task(cancels.run(stop))
    await asyncio.sleep(0)  # the loop has started its first pass
    stop.set()
    async with asyncio.timeout(30):  # a bound for hangs: without the stop wake-up this waits an hour
        await loop
