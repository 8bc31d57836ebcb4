"""A crawl worker against real PostgreSQL and a real local site: what it does when things fail."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from libs.db import page
from services.crawler import queue as tasks_queue
from services.crawler.frontier import url_key
from services.crawler.settle import Outcome
from services.crawler.store import CrawlStore, retrying
from services.crawler.worker import Worker
from tests.support.crawler import (
    crawler_database,
    crawler_settings,
    job_spec,
    running_worker,
    site_waiting,
    wait_for_job,
)
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
        created = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 1})])
        (job,), tasks = created.jobs, created.tasks
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
        created = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 0})])
        (job,), tasks = created.jobs, created.tasks
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


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Until a log record containing `text` was written (a fact the worker records)."""
    async with asyncio.timeout(30):
        while not any(text in r.getMessage() for r in caplog.records):  # noqa: ASYNC110 - records are a list
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def one_page_crawl(
    backend: dict[str, Any], site: LocalSite, **hooks: Any
) -> AsyncIterator[tuple[CrawlStore, str, Worker]]:
    """A job for the site's home page alone, its task published to a running worker."""
    async with site.serve(), crawler_database(backend) as db:
        store = CrawlStore(db)
        created = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 0})])
        async with running_worker(db, crawler_settings(backend), **hooks) as worker:
            await tasks_queue.publish(worker.queue, created.tasks)
            yield store, created.jobs[0].id, worker


async def url_states(store: CrawlStore, job_id: str) -> list[tuple[str, str]]:
    urls, _ = await store.list_urls(job_id, None, "", page(10, 0, "", "", allowed=("created_at",)))
    return [(u.state, u.reason) for u in urls]


async def test_stopping_lets_a_fetch_under_way_finish_and_settle(
    backend: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    site = LocalSite()
    site.add("/", "Home")
    site.close()
    caplog.set_level(logging.INFO, logger="services.crawler.worker")
    async with one_page_crawl(backend, site) as (store, job_id, worker):
        await site_waiting(site, 1)
        stopping = asyncio.create_task(worker.stop(grace=60))
        await logged(caplog, "crawl worker stopping")
        site.open()
        await stopping
        requeued = await worker.queue.depth()
        job = await store.get_job(job_id)
        states = await url_states(store, job_id)

    assert states == [("done", "")]
    assert job.status == "completed" and job.result_count == 1
    assert requeued == 0  # the delivery was acked


async def test_what_does_not_finish_within_the_grace_period_is_delivered_again(backend: dict[str, Any]) -> None:
    site = LocalSite()
    site.add("/", "Home")
    site.close()
    async with one_page_crawl(backend, site) as (store, job_id, worker):
        await site_waiting(site, 1)
        await worker.stop(grace=0.1)  # the page never answers
        requeued = await worker.queue.depth()
        states = await url_states(store, job_id)

    assert states == [("queued", "")]
    assert requeued == 1


async def test_a_settle_under_way_when_the_grace_period_ends_runs_to_its_end(
    backend: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    site = LocalSite()
    site.add("/", "Home")
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_the_settle(job_id: str, outcomes: list[Outcome]) -> None:
        entered.set()
        await release.wait()

    async with one_page_crawl(backend, site, before_counters=hold_the_settle) as (store, job_id, worker):
        await asyncio.wait_for(entered.wait(), 30)
        stopping = asyncio.create_task(worker.stop(grace=0.1))
        await logged(caplog, "shutdown grace of 0.1 s is over")
        release.set()
        await stopping
        requeued = await worker.queue.depth()
        job = await store.get_job(job_id)
        states = await url_states(store, job_id)

    assert states == [("done", "")]
    assert job.status == "completed" and job.result_count == 1
    assert requeued == 0


async def test_tasks_of_a_job_arriving_together_read_its_context_once(backend: dict[str, Any]) -> None:
    site = LocalSite()
    paths = [f"/{i}.html" for i in range(8)]
    for path in paths:
        site.add(path, path)
    async with site.serve(), crawler_database(backend) as db:
        store = CrawlStore(db)
        created = await store.create_jobs([job_spec([site.url(p) for p in paths], config={"max_depth": 0})])
        async with running_worker(db, crawler_settings(backend)) as worker:
            reads: list[str] = []
            load = worker._load_context

            async def counted(job_id: str) -> Any:
                reads.append(job_id)
                await asyncio.sleep(0.05)  # a slow read: the other tasks arrive meanwhile
                return await load(job_id)

            worker._load_context = counted  # type: ignore[method-assign]
            await tasks_queue.publish(worker.queue, created.tasks)
            job = await wait_for_job(store, created.jobs[0].id)

    assert job.status == "completed" and job.result_count == 8
    assert reads == [job.id]


async def test_a_job_stored_with_a_pattern_re2_cannot_run_fails_naming_it_and_fetches_nothing(
    backend: dict[str, Any],
) -> None:
    site = LocalSite()
    paths = ["/", "/a.html", "/b.html"]
    for path in paths:
        site.add(path, path)
    async with site.serve(), crawler_database(backend) as db:
        store = CrawlStore(db)
        # As a release whose patterns ran on Python's re stored it; this one refuses it at save.
        config = {"max_depth": 0, "exclude_patterns": ["/(?!a)"]}
        created = await store.create_jobs([job_spec([site.url(p) for p in paths], config=config)])
        async with running_worker(db, crawler_settings(backend)) as worker:
            await tasks_queue.publish(worker.queue, created.tasks)
            job = await wait_for_job(store, created.jobs[0].id)
            states = await url_states(store, job.id)
            left = await worker.queue.depth()

    assert job.status == "failed"
    assert job.error.startswith(
        "exclude pattern '/(?!a)' is not a valid regular expression: invalid perl operator: (?!"
    )
    assert states == [("cancelled", "cancelled")] * 3
    assert site.requests == []
    assert left == 0  # every task acked: none goes round the queue
