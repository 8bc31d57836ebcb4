"""The crawler counts what a user scrapes: fetches by status class, their latency, queue depth."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from tests.support.crawler import accepted_ids, crawler_settings, run_step, running_crawler, step_call, wait_for_status
from tests.support.site import small_site


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fetches_and_queue_depth_are_recorded(tmp_path: Path) -> None:
    before_2xx = sample("quaero_pages_fetched_total", status_class="2xx")
    before_4xx = sample("quaero_pages_fetched_total", status_class="4xx")
    before_count = sample("quaero_fetch_duration_seconds_count")
    site = small_site(3)
    site.add("/", "Index", ["/page-0.html", "/page-1.html", "/page-2.html", "/missing.html"])
    settings = crawler_settings({"database_url": None, "data_dir": tmp_path})
    async with site.serve(), running_crawler(settings) as c:
        (job_id,) = accepted_ids(await run_step(c.stub, step_call({"start_urls": [site.url()], "max_depth": 1})))
        await wait_for_status(c.stub, job_id)
        for _ in range(100):  # the sampler runs every few seconds
            if REGISTRY.get_sample_value("quaero_queue_depth", {"queue": settings.queue_name}) is not None:
                break
            await asyncio.sleep(0.1)

    assert sample("quaero_pages_fetched_total", status_class="2xx") - before_2xx == 4
    assert sample("quaero_pages_fetched_total", status_class="4xx") - before_4xx == 1
    assert sample("quaero_fetch_duration_seconds_count") - before_count == 5
    assert REGISTRY.get_sample_value("quaero_queue_depth", {"queue": settings.queue_name}) == 0
