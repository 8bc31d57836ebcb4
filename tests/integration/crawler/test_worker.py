"""A crawl worker against real PostgreSQL and a real local site: what it does when things fail."""

from __future__ import annotations

from pathlib import Path

from libs.db import page
from services.crawler import queue as tasks_queue
from services.crawler.frontier import url_key
from services.crawler.settle import Outcome
from services.crawler.store import CrawlStore
from tests.support.crawler import crawler_database, crawler_settings, job_spec, running_worker, wait_for_job
from tests.support.databases import terminate_backends
from tests.support.services import common_settings
from tests.support.site import LocalSite


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

    async with linked_pair().serve() as site, crawler_database(common, pre_ping=False, server_settings={"synchronous_commit": "off"}) as db:
        store = CrawlStore(db)
        (job,), tasks = await store.create_jobs([job_spec([site.url("/")], config={"max_depth": 1})])
        async with running_worker(db, crawler_settings(common), before_counters=cut_connections_once) as worker:
            # What a commit lost with the database (synchronous_commit off) leaves behind: the
            # cache claims /a.html is in the frontier, and it is not.
            worker._known[job.id] = {url_key(site.url("/a.html")): 1}
            await tasks_queue.publish(worker.queue, tasks)
            final = await wait_for_job(store, job.id)
        documents, _ = await store.list_documents("", job.id, page(10, 0, "", "", allowed=("created_at",)))

    assert terminated and terminated[0] > 0
    assert final.status == "completed"
    assert sorted(d.url for d in documents) == [site.url("/"), site.url("/a.html")]
