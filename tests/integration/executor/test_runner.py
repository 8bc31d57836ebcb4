"""The step runner against a real crawler: cancelling crawl jobs outlasts a crawler outage, and
closing it (shutdown) starts nothing new and loses no ledger write."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from libs.db import Database
from libs.grpc_server import open_channel
from quaero.v1 import crawler_service_pb2_grpc
from services.executor.catalogue import Catalogue
from services.executor.definitions import JobDefinition, Step
from services.executor.executions import Executions
from services.executor.ledger import Ledger
from services.executor.model import RUNNING, Execution, StepState
from services.executor.runner import Runner
from services.executor.store import ExecutorStore
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


@pytest.fixture
def common(tmp_path: Path) -> dict[str, Any]:
    return common_settings(None, tmp_path / "data")


@pytest.fixture
def backend(common: dict[str, Any]) -> dict[str, Any]:
    """These tests run on SQLite only: the shared executor_db fixture takes this backend."""
    return common


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.runner")


@pytest.fixture
async def make_runner(executor_db: Database) -> AsyncIterator[Any]:
    """Runners on the executor's database talking to the crawler at an address; closed after."""
    made: list[tuple[Runner, Any]] = []

    def make(crawler_addr: str, **options: Any) -> Runner:
        channel = open_channel(crawler_addr)

        async def no_post_jobs(_execution_id: str) -> None:
            raise AssertionError("no post-jobs here")

        runner = Runner(
            Ledger(executor_db),
            ExecutorStore(executor_db),
            crawler_service_pb2_grpc.CrawlerServiceStub(channel),
            owner="replica-1",
            lease_seconds=30,
            trigger_post_jobs=no_post_jobs,
            **options,
        )
        made.append((runner, channel))
        return runner

    yield make
    for runner, channel in made:
        await runner.close()
        await channel.close()


def logged(caplog: pytest.LogCaptureFixture, message: str, execution_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message and getattr(r, "execution_id", "") == execution_id]


async def test_crawl_jobs_are_cancelled_once_the_crawler_is_back(
    common: dict[str, Any], make_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    execution_id = str(uuid.uuid4())
    # No workers: the crawl job stays running until something cancels it.
    settings = crawler_settings(common)
    async with running_crawler(settings, run_workers=False) as crawler:
        call = step_call(
            {"start_urls": ["http://127.0.0.1:9/"], "wait_for_completion": False}, execution_id=execution_id
        )
        [job_id] = accepted_ids(await run_step(crawler.stub, call))
        port = crawler.port
    runner = make_runner(f"127.0.0.1:{port}", cancel_backoff=(0.05, 0.5))

    cleanup = runner.cancel_crawl_jobs(execution_id, "cancelled")  # returns at once: the crawler is down

    async def retrying() -> bool:
        return bool(logged(caplog, "could not cancel crawl jobs yet; retrying", execution_id))

    await wait_until(retrying)
    assert not cleanup.done()
    async with running_crawler(crawler_settings(common, crawler_port=port), run_workers=False) as back:
        await cleanup
        assert status_name(await wait_for_status(back.stub, job_id)) == "cancelled"
    [done] = logged(caplog, "crawl jobs cancelled", execution_id)
    assert done.crawl_job_ids == [job_id]
    assert not logged(caplog, "left cancelling the execution's crawl jobs to the durable cancels", execution_id)


async def test_an_unreachable_crawler_leaves_the_cancel_to_the_durable_cancels(
    make_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    execution_id = str(uuid.uuid4())
    runner = make_runner("127.0.0.1:9", cancel_retry_for=0.0)

    await runner.cancel_crawl_jobs(execution_id, "timeout")

    [gave_up] = logged(caplog, "left cancelling the execution's crawl jobs to the durable cancels", execution_id)
    assert gave_up.levelno == logging.WARNING and gave_up.code == "UNAVAILABLE" and gave_up.reason == "timeout"


class _Actions:
    """The crawler's action list, as the catalogue asks for it."""

    async def names(self, wanted: Any = ()) -> frozenset[str]:
        return frozenset({"crawl", "reindex"})


def crawl_execution(url: str) -> Execution:
    """An execution as Executions.execute records it: its first step sent, attempt 1."""
    step = {"name": "crawl", "action": "crawl", "on_error": "fail", "config": {"start_urls": [url]}}
    return Execution(
        id=str(uuid.uuid4()),
        job_definition_id="d",
        job_name="D",
        definition={"id": "d", "steps": [step], "sources": [], "post_jobs": []},
        status=RUNNING,
        trigger="api",
        lineage=[],
        steps=[StepState(0, "crawl", "crawl", status=RUNNING, attempts=1)],
        owner="replica-1",
    )


async def test_a_closed_runner_starts_nothing_and_executions_are_handed_back(
    executor_db: Database, make_runner: Any
) -> None:
    runner = make_runner("127.0.0.1:9")
    store, ledger = runner.store, runner.ledger
    definition = JobDefinition(id="d", name="D", type="custom", steps=[Step("r", "reindex")])
    await store.save_definition(definition, mode="create", validate=lambda *_: [])
    executions = Executions(ledger, Catalogue(store, _Actions()), runner, owner="replica-1", lease_seconds=30)

    await executions.shutdown()

    started, _ = await ledger.create(crawl_execution("http://127.0.0.1:9/"), lease_seconds=30, events=[])
    assert runner.start(started) is False and runner.driving == []
    # An RPC finishing during the shutdown grace period: recorded, not driven, lease given back.
    late, replayed = await executions.execute("d")
    assert not replayed and runner.driving == []
    stored = await ledger.get(late.id)
    assert (stored.status, stored.owner, stored.lease_until) == ("running", None, None)
    assert late.id in await ledger.orphans()  # another replica resumes it at once


async def test_close_waits_for_the_ledger_writes_of_the_drivers_it_stops(
    common: dict[str, Any], executor_db: Database, make_runner: Any
) -> None:
    async with running_crawler(crawler_settings(common), run_workers=False) as crawler:
        runner = make_runner(f"127.0.0.1:{crawler.port}")
        execution, _ = await runner.ledger.create(crawl_execution("http://127.0.0.1:9/"), lease_seconds=30, events=[])
        # SQLite has one writer connection: holding it pauses the driver's first write (the
        # crawl job the crawler accepted) until we let go.
        async with executor_db.connection():
            assert runner.start(execution)
            await wait_until(lambda: _writing(runner))
            closing = asyncio.create_task(runner.close())
            await wait_until(lambda: _stopped(runner))
            for _ in range(20):
                await asyncio.sleep(0)  # plenty of turns for close() to end, were it not waiting
            assert not closing.done()
        assert await closing == [execution.id]
        recorded = await runner.ledger.get(execution.id)
        assert len(recorded.steps[0].crawl_job_ids) == 1
        assert "step_accepted" in [e.type for e in await runner.ledger.events_after(execution.id, 0)]


async def _writing(runner: Runner) -> bool:
    return bool(runner._writes)


async def _stopped(runner: Runner) -> bool:
    return not runner.driving
