"""The step runner against a real crawler: cancelling crawl jobs outlasts a crawler outage."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from libs.db import Database
from libs.grpc_server import insecure_channel
from quaero.v1 import crawler_service_pb2_grpc
from services.executor.ledger import Ledger
from services.executor.runner import Runner
from services.executor.settings import ExecutorSettings
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
from tests.support.services import common_settings, migrate_for


@pytest.fixture
def common(tmp_path: Path) -> dict[str, Any]:
    return common_settings(None, tmp_path / "data")


@pytest.fixture
async def executor_db(common: dict[str, Any]) -> AsyncIterator[Database]:
    await migrate_for(common)
    db = Database(ExecutorSettings(**common).database_url_for("executor"), "executor")
    await db.start()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.runner")


@pytest.fixture
async def make_runner(executor_db: Database) -> AsyncIterator[Any]:
    """Runners on the executor's database talking to the crawler at an address; closed after."""
    made: list[tuple[Runner, Any]] = []

    def make(crawler_addr: str, **options: Any) -> Runner:
        channel = insecure_channel(crawler_addr)

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
    assert not logged(caplog, "gave up cancelling the execution's crawl jobs", execution_id)


async def test_giving_up_on_an_unreachable_crawler_is_an_error(
    make_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    execution_id = str(uuid.uuid4())
    runner = make_runner("127.0.0.1:9", cancel_retry_for=0.0)

    await runner.cancel_crawl_jobs(execution_id, "timeout")

    [gave_up] = logged(caplog, "gave up cancelling the execution's crawl jobs", execution_id)
    assert gave_up.levelno == logging.ERROR and gave_up.code == "UNAVAILABLE" and gave_up.reason == "timeout"
