"""A crawl of the test site stores exactly the expected pages and records every skip reason."""

from __future__ import annotations

from typing import Any

from quaero.v1 import crawl_job_pb2, source_pb2
from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    frontier,
    job_documents,
    run_step,
    running_crawler,
    source,
    step_call,
)
from tests.support.site import serve_site

CONFIG = {"max_depth": 3, "exclude_patterns": ["/private/"]}


def site_source(base: str) -> source_pb2.Source:
    return source(
        "test-site",
        base + "/",
        filters=source_pb2.SourceFilters(exclude_patterns=["/drafts/"]),
        crawl=crawl_job_pb2.CrawlConfig(max_depth=1, concurrency=8),
    )


async def test_embedded_crawl_stores_exactly_the_expected_pages(backend: dict[str, Any]) -> None:
    async with serve_site() as site, running_crawler(crawler_settings(backend)) as crawler:
        events = await run_step(crawler.stub, step_call(CONFIG, sources=[site_source(site.base)]))

        finished = events[-1].finished
        assert finished.ok, finished.error
        (job_id,) = accepted_ids(events)
        urls = await frontier(crawler.stub, job_id)
        docs = await job_documents(crawler.stub, job_id)
        assert urls == site.expected()
        assert sorted(docs) == sorted(site.expected_documents())
        job = finished.jobs[0]
        assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED
