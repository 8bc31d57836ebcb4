"""Two workers settling a job's last two URLs at the same moment: the job completes exactly once."""

from __future__ import annotations

import asyncio
import time

from libs.amqp import RabbitQueue
from libs.db import Database
from services.crawler.queue import queue_spec
from services.crawler.settings import CrawlerSettings
from services.crawler.settle import Outcome
from services.crawler.worker import Worker, build_worker
from tests.support.crawler import accepted_ids, event_types, job_documents, run_step, running_crawler, step_call
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
