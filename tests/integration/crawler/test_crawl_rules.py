"""Budget, cancel and poison tasks, on embedded SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from libs.db import page
from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.parse import ParsedPage, parse_page
from services.crawler.store import CrawlStore
from tests.integration.crawler.test_crawl_site import CONFIG, site_source
from tests.support.crawler import (
    accepted_ids,
    assert_counters_match,
    crawler_database,
    crawler_settings,
    event_types,
    frontier,
    job_documents,
    run_step,
    running_crawler,
    site_answered,
    site_waiting,
    step_call,
    wait_for_status,
)
from tests.support.site import serve_site, small_site

TERMINAL = {"completed", "failed", "cancelled"}


async def test_max_pages_stores_exactly_that_many_pages_all_in_scope(backend: dict[str, Any]) -> None:
    async with serve_site() as site, running_crawler(crawler_settings(backend)) as c:
        events = await run_step(c.stub, step_call({**CONFIG, "max_pages": 10}, sources=[site_source(site.base)]))

        (job_id,) = accepted_ids(events)
        job = await wait_for_status(c.stub, job_id)
        docs = await job_documents(c.stub, job_id)
        urls = await frontier(c.stub, job_id)
        assert events[-1].finished.ok
        assert len(docs) == 10
        assert set(docs) <= site.expected_documents()
        assert ("skipped", "budget") in urls.values()
        assert_counters_match(job, urls, 10)


async def test_cancel_mid_crawl_stops_fetching_with_one_cancelled_event(backend: dict[str, Any]) -> None:
    # No lease expires while pages are held: every task out is one the site already holds.
    settings = crawler_settings(backend, visibility_timeout=300)
    site = small_site(12)
    site.held = lambda path: path != "/"
    site.close()
    async with site.serve():
        async with running_crawler(settings) as c:
            call = step_call(
                # No sitemap reading: every request but the index is held, /sitemap.xml too.
                {"start_urls": [site.url()], "max_depth": 1, "concurrency": 3, "wait_for_completion": False,
                 "sitemap": "skip"}
            )  # fmt: skip
            (job_id,) = accepted_ids(await run_step(c.stub, call))
            await site_waiting(site, 3)  # the job's three tasks out are being fetched, held at the gate

            cancelled = await c.stub.CancelCrawlJob(crawler_service_pb2.CancelCrawlJobRequest(id=job_id))
            before_cancel = site.page_requests()
            site.open()
            await site_answered(site, len(before_cancel))
        # The crawler stopped gracefully: what it fetched is settled; nothing more can be fetched.
        async with crawler_database(backend) as db:
            store = CrawlStore(db)
            job = await store.get_job(job_id)
            urls, _ = await store.list_urls(job_id, None, "", page(0, 0, "", "", allowed=("created_at",)))
        types = await event_types(settings, job_id)

    assert cancelled.crawl_job.status == crawl_job_pb2.CRAWL_JOB_STATUS_CANCELLED
    assert site.page_requests() == before_cancel  # no request reached the site after the cancel
    assert len(before_cancel) == 4  # the index and the three held pages
    assert job.status == "cancelled" and job.pending_urls == 0 and job.result_count == 1
    # The held pages were fetched, but their settle found them cancelled: no document, no new task.
    assert {(u.url, u.state) for u in urls} == {(site.url("/"), "done")} | {
        (site.url(f"/page-{i}.html"), "cancelled") for i in range(12)
    }
    assert [t for t in types if t in TERMINAL] == ["cancelled"]


async def test_a_task_that_keeps_failing_is_dead_lettered_and_its_url_fails_as_poison(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def parse(url: str, body: bytes, charset: str | None) -> ParsedPage:
        if url.endswith("/blog/post-3.html"):
            raise RuntimeError("this page breaks the parser")
        return parse_page(url, body, charset)

    settings = crawler_settings({"database_url": None, "data_dir": tmp_path}, delivery_limit=2)
    async with serve_site() as site, running_crawler(settings, worker_hooks={"parse": parse}) as c:
        events = await run_step(c.stub, step_call(CONFIG, sources=[site_source(site.base)]))

        (job_id,) = accepted_ids(events)
        urls = await frontier(c.stub, job_id)
        docs = await job_documents(c.stub, job_id)
        assert events[-1].finished.ok
        assert urls[site.url("/blog/post-3.html")] == ("failed", "poison")
        assert sorted(docs) == sorted(site.expected_documents() - {site.url("/blog/post-3.html")})


async def test_concurrency_bounds_the_requests_in_flight_to_a_site(backend: dict[str, Any]) -> None:
    """`concurrency` is the number of URLs of a job being fetched (or on their way to a worker)
    at once: a slow site never sees more requests together, and does see them in parallel."""
    site = small_site(12)
    site.delay = 0.3
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        events = await run_step(c.stub, step_call({"start_urls": [site.url()], "max_depth": 1, "concurrency": 3}))
        (job_id,) = accepted_ids(events)
        job = await wait_for_status(c.stub, job_id)

    assert events[-1].finished.ok and job.result_count == 13
    assert site.max_active <= 3
    assert site.max_active >= 2
