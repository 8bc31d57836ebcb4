"""A crawl worker against real PostgreSQL and a real local site: what it does when things fail."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text

from libs.db import page
from services.crawler import queue as tasks_queue
from services.crawler.frontier import url_key
from services.crawler.settle import Outcome
from services.crawler.store import CrawlStore, retrying
from tests.support.crawler import crawler_database, crawler_settings, job_spec, running_worker, wait_for_job
from tests.support.databases import terminate_backends
from tests.support.services import common_settings
from tests.support.site import LocalSite

# How a worker process opens its database (services.crawler.worker.serve).
WORKER_DB: dict[str, Any] = {"pre_ping": False, "server_settings": {"synchronous_commit": "off"}}


def linked_pair() -> LocalSite:
    site = LocalSite()
    site.add("/", "Home", ["/a.html"])
    site.add("/a.html", "A")
    return site


async def test_a_database_error_empties_the_cache_of_known_urls(pg_url: str, tmp_path: Path) -> None:
    common = common_settings(pg_url, tmp_path)
    terminated: list[int] = []

    async def cut_connections_once(job_id: str, outcomes: list[Outcome]) -> None:
        # Inside the settle of "/", after it found /a.html: the transaction is lost.
        if not terminated:
            terminated.append(await terminate_backends(pg_url))

    async with (
        linked_pair().serve() as site,
        crawler_database(common, **WORKER_DB) as db,
    ):
        store = CrawlStore(db)
        (job,), tasks = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 1})])
        async with running_worker(db, crawler_settings(common), before_counters=cut_connections_once) as worker:
            # What a commit lost with the database (synchronous_commit off) leaves behind: the
            # cache claims /a.html is in the frontier, and it is not.
            worker._known[job.id] = {url_key(site.url("/a.html")): 1}
            await tasks_queue.publish(worker.queue, tasks)
            final = await wait_for_job(store, job.id)
        every = page(10, 0, "", "", allowed=("created_at",))
        documents, _ = await retrying("listing documents", lambda: store.list_documents("", job.id, every))

    assert terminated and terminated[0] > 0
    assert final.status == "completed"
    assert sorted(d.url for d in documents) == [site.url("/"), site.url("/a.html")]


class HeldSleeps:
    """A worker's backoff sleeps, recorded and held until the test lets each one end."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._ends = asyncio.Semaphore(0)
        self._changed = asyncio.Condition()

    async def __call__(self, delay: float) -> None:
        async with self._changed:
            self.delays.append(delay)
            self._changed.notify_all()
        await self._ends.acquire()

    def end_one(self) -> None:
        self._ends.release()

    async def requested(self, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.delays) >= count), 30)


async def test_a_database_error_while_settling_waits_longer_each_time_before_requeueing(
    pg_url: str, tmp_path: Path
) -> None:
    common = common_settings(pg_url, tmp_path)
    sleeps = HeldSleeps()
    site = LocalSite()
    site.add("/", "Home")
    async with site.serve(), crawler_database(common, **WORKER_DB) as db:
        store = CrawlStore(db)
        (job,), tasks = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 0})])
        async with db.session() as session:  # an outage of the one table a settle of a page needs
            await session.execute(text("ALTER TABLE documents RENAME TO documents_away"))
        settings = crawler_settings(common, delivery_limit=2)
        async with running_worker(db, settings, backoff_sleep=sleeps) as worker:
            await tasks_queue.publish(worker.queue, tasks)
            await sleeps.requested(1)
            fetched_before_first_requeue = site.hits["/"]
            sleeps.end_one()
            await sleeps.requested(2)
            fetched_before_second_requeue = site.hits["/"]
            async with db.session() as session:
                await session.execute(text("ALTER TABLE documents_away RENAME TO documents"))
            sleeps.end_one()
            final = await wait_for_job(store, job.id)
            urls, _ = await store.list_urls(job.id, None, "", page(10, 0, "", "", allowed=("created_at",)))

    assert fetched_before_first_requeue == 1  # the task was held, not given back at once
    assert fetched_before_second_requeue == 2
    assert sleeps.delays[1] > sleeps.delays[0] > 0
    # Two failed deliveries of a delivery limit of 2: without the waits it would be poison.
    assert final.status == "completed"
    assert [(u.state, u.reason) for u in urls] == [("done", "")]
