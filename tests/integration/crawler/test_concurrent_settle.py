"""Settles running side by side: the last two URLs of a job settled at the same moment complete the job
exactly once, and settles that find each other's URLs never wait on each other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.amqp import RabbitQueue
from libs.db import Database, utcnow
from services.crawler.frontier import canonical_url, host_of, url_key
from services.crawler.queue import queue_spec
from services.crawler.settings import CrawlerSettings
from services.crawler.settle import _PG_DISCOVER, Outcome
from services.crawler.store import CrawlStore
from services.crawler.worker import Worker, build_worker
from tests.support.crawler import (
    accepted_ids,
    crawler_database,
    event_types,
    job_documents,
    job_spec,
    run_step,
    running_crawler,
    step_call,
)
from tests.support.services import common_settings
from tests.support.site import LocalSite, Page, html_page


async def test_the_last_two_urls_settled_at_once_complete_the_job_exactly_once(shared: CrawlerSettings) -> None:
    settings = shared.model_copy(update={"worker_prefetch": 1})
    site = LocalSite(
        pages={
            "/": Page(body=html_page("Home", ["/a.html", "/b.html"])),
            "/a.html": Page(body=html_page("A", [])),
            "/b.html": Page(body=html_page("B", [])),
        }
    )
    barrier = asyncio.Barrier(2)
    met: list[float] = []

    async def hold_before_counting(job_id: str, outcomes: list[Outcome]) -> None:
        # Inside each settle transaction, just before the counter update: wait for the other.
        if any(o.url.endswith(("/a.html", "/b.html")) for o in outcomes):
            await asyncio.wait_for(barrier.wait(), 30)
            met.append(time.monotonic())

    workers: list[Worker] = []
    async with site.serve(), running_crawler(settings, run_workers=False) as c:
        try:
            for _ in range(2):
                db = Database(settings.database_url_for("crawler"), "crawler", pool_size=2)
                queue = await RabbitQueue.connect(str(settings.amqp_url), queue_spec(settings))
                worker = build_worker(db, queue, settings, before_counters=hold_before_counting)
                await worker.start()
                workers.append(worker)

            events = await run_step(c.stub, step_call({"max_depth": 1, "start_urls": [site.url("/")]}))
        finally:
            for worker in workers:
                await worker.stop()
                await worker.fetcher.close()
                await worker.queue.close()
                await worker.db.close()

        assert events[-1].finished.ok, events[-1].finished.error
        assert len(met) == 2  # both transactions were held together
        (job_id,) = accepted_ids(events)
        assert sorted(await job_documents(c.stub, job_id)) == [site.url(p) for p in ("/", "/a.html", "/b.html")]
        types = await event_types(settings, job_id)
        assert [t for t in types if t in {"completed", "failed", "cancelled"}] == ["completed"]


async def test_settles_finding_each_others_urls_do_not_wait_on_each_other(pg_url: str, tmp_path: Path) -> None:
    """Two settles under way, each having settled a URL the other's page links to: neither
    inserts a URL it can see, so neither waits for the other (they used to deadlock, stalling
    both for PostgreSQL's deadlock_timeout)."""
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        created = await CrawlStore(db).create_jobs([job_spec(["http://docs.test/a", "http://docs.test/b"])])
        (job,) = created.jobs
        ids = {t.url: t.url_id for t in created.tasks}
        a, b = "http://docs.test/a", "http://docs.test/b"
        assert (canonical_url(a), canonical_url(b)) == (a, b)
        async with db.session() as first, db.session() as second:
            for session, settled in ((first, a), (second, b)):
                await session.execute(text("SET LOCAL lock_timeout = '5s'"))
                await session.execute(text("UPDATE crawl_urls SET state = 'done' WHERE id = :id"), {"id": ids[settled]})
            found = await asyncio.gather(discover(first, job.id, [b]), discover(second, job.id, [a]))

    assert found == [{url_key(b): "known"}, {url_key(a): "known"}]


async def discover(session: AsyncSession, job_id: str, urls: list[str]) -> dict[str, str]:
    """Run the settle's discover statement for `urls` (depth 1, queued if new)."""
    keys = [url_key(u) for u in urls]
    rows = await _PG_DISCOVER.fetch(
        session,
        {
            "job_id": job_id,
            "now": utcnow(),
            "keys": keys,
            "urls": urls,
            "hosts": [host_of(u) for u in urls],
            "depths": [1] * len(urls),
            "states": ["queued"] * len(urls),
            "reasons": [""] * len(urls),
            "hops": [0] * len(urls),
            "froms": [""] * len(urls),
        },
    )
    return {r["url_key"]: "inserted" if r["state"] is not None else "known" for r in rows}
