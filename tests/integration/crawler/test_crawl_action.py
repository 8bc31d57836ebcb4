"""The crawl action against real databases: creating a step's jobs, whatever happens meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from libs.amqp import InProcessQueue
from libs.db import page
from quaero.v1 import crawler_service_pb2
from services.crawler.actions.crawl import CrawlAction
from services.crawler.queue import queue_spec
from services.crawler.store import CrawlStore, ListFilter
from tests.support.crawler import crawler_database, crawler_settings, step_call

START = {"start_urls": ["http://docs.test/"], "wait_for_completion": False}
EVERY = ListFilter()


async def test_a_step_cancelled_while_its_jobs_are_created_still_creates_and_publishes_them(
    backend: dict[str, Any],
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_the_creation() -> None:
        entered.set()
        await release.wait()

    events: list[crawler_service_pb2.StepEvent] = []
    async with crawler_database(backend) as db:
        store = CrawlStore(db, before_commit=hold_the_creation)
        queue = InProcessQueue(queue_spec(crawler_settings(backend)))
        step = asyncio.create_task(CrawlAction(db, store, queue).run(step_call(START), events.append))
        await asyncio.wait_for(entered.wait(), 30)
        step.cancel()  # the RunSteps stream went away
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await step
        # The creation goes on in the background (shielded): until its seed is published (a
        # bound for hangs, not a speed check).
        async with asyncio.timeout(30):
            while not await queue.depth():  # noqa: ASYNC110 - the queue holds no waiter to await
                await asyncio.sleep(0.01)
        jobs, total = await store.list_jobs(EVERY, page(0, 0, "", "", allowed=("created_at",)))
        published = await queue.depth()

    assert total == 1 and jobs[0].status == "running"
    assert published == 1  # its seed went out: the job does not wait for a lease to expire
    assert events == []
