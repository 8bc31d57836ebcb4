"""CrawlStore against real databases: creating jobs, and cancelling an execution's jobs."""

from __future__ import annotations

from typing import Any

from services.crawler.store import CrawlStore
from tests.support.crawler import crawler_database, job_spec


async def test_a_job_keeps_a_request_id_of_any_length(backend: dict[str, Any]) -> None:
    request_id = "r" * 300
    async with crawler_database(backend) as db:
        store = CrawlStore(db)

        (job,), tasks = await store.create_jobs([job_spec(["http://docs.test/"], request_id=request_id)])

        assert (await store.get_job(job.id)).request_id == request_id
        assert [t.request_id for t in tasks] == [request_id]
