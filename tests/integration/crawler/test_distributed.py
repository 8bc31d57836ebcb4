"""Crawler server, worker processes, PostgreSQL and RabbitMQ: the production topology, with faults.

Every fault test ends with the job completed and exactly the documents of an undisturbed crawl.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.settings import CrawlerSettings
from tests.integration.crawler.test_crawl_site import CONFIG, site_source
from tests.support.crawl_workers import TcpProxy, worker_processes
from tests.support.crawler import (
    Crawler,
    accepted_ids,
    assert_counters_match,
    frontier,
    job_documents,
    run_step,
    running_crawler,
    step_call,
    wait_for_status,
)
from tests.support.databases import asyncpg_dsn, terminate_backends
from tests.support.site import LocalSite, Page, ScenarioSite, html_page, serve_site

# How early a timer may fire (uvloop rounds to milliseconds).
TIMER_RESOLUTION = 0.005
# Politeness slows the crawl enough for a fault to land in the middle of it.
SLOW = {**CONFIG, "rate_limit": 25, "wait_for_completion": False}


async def assert_exact_result(c: Crawler, site: ScenarioSite, job_id: str, *, timeout: float = 120) -> None:
    job = await wait_for_status(c.stub, job_id, timeout=timeout)
    urls = await frontier(c.stub, job_id)
    docs = await job_documents(c.stub, job_id)
    assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED, job.error
    assert urls == site.expected()
    assert sorted(docs) == sorted(site.expected_documents())
    assert_counters_match(job, urls, len(docs))
    every = await c.stub.ListDocuments(crawler_service_pb2.ListDocumentsRequest(source_id="test-site", limit=500))
    assert every.total_count == len(docs)  # none stored twice


async def wait_until_settled(c: Crawler, job_id: str, at_least: int) -> None:
    for _ in range(600):
        job = (await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))).crawl_job
        if job.progress.completed_urls >= at_least:
            assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_RUNNING, "the crawl finished before the fault"
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the crawl made no progress")


async def crawl_through(
    c: Crawler, site: ScenarioSite, fault: Callable[[], Awaitable[None]], *, after: int = 12
) -> str:
    (job_id,) = accepted_ids(await run_step(c.stub, step_call(SLOW, sources=[site_source(site.base)])))
    await wait_until_settled(c, job_id, after)
    await fault()
    return job_id


async def test_two_worker_processes_store_exactly_the_expected_pages(shared: CrawlerSettings, tmp_path: Path) -> None:
    async with (
        serve_site() as site,
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path) as workers,
    ):
        events = await run_step(c.stub, step_call(CONFIG, sources=[site_source(site.base)]))

        assert events[-1].finished.ok, [w.output() for w in workers]
        await assert_exact_result(c, site, accepted_ids(events)[0])


async def test_a_worker_killed_mid_crawl_loses_nothing(shared: CrawlerSettings, tmp_path: Path) -> None:
    async with (
        serve_site() as site,
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path) as workers,
    ):

        async def kill_one() -> None:
            workers[0].kill()

        job_id = await crawl_through(c, site, kill_one)
        (tmp_path / "replacement").mkdir()
        async with worker_processes(shared, 1, tmp_path / "replacement"):
            await assert_exact_result(c, site, job_id)


async def test_broker_connections_cut_mid_crawl_lose_nothing(
    shared: CrawlerSettings, amqp_url: str, tmp_path: Path
) -> None:
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    proxied = shared.model_copy(
        update={"amqp_url": amqp_url.replace(broker.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")}
    )
    try:
        async with (
            serve_site() as site,
            running_crawler(proxied, run_workers=False) as c,
            worker_processes(proxied, 2, tmp_path),
        ):

            async def cut() -> None:
                assert proxy.cut() > 0

            job_id = await crawl_through(c, site, cut)
            await assert_exact_result(c, site, job_id)
    finally:
        await proxy.close()


async def test_database_connections_terminated_mid_crawl_lose_nothing(
    shared: CrawlerSettings, pg_url: str, tmp_path: Path
) -> None:
    async with (
        serve_site() as site,
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path),
    ):

        async def terminate() -> None:
            assert await terminate_backends(pg_url) > 0

        job_id = await crawl_through(c, site, terminate)
        await assert_exact_result(c, site, job_id)


async def test_crawl_delay_holds_across_worker_processes(shared: CrawlerSettings, tmp_path: Path) -> None:
    delay = 0.25
    pages = {f"/p{i}.html": Page(body=html_page(f"P{i}", [])) for i in range(8)}
    site = LocalSite(pages={"/": Page(body=html_page("Home", list(pages))), **pages})
    site.robots_txt = f"User-agent: *\nCrawl-delay: {delay}\n"
    async with (
        site.serve(),
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path),
    ):
        started = time.time()
        events = await run_step(c.stub, step_call({"max_depth": 1, "start_urls": [site.url("/")]}))

        assert events[-1].finished.ok
        arrivals = sorted(at for at, _ in site.page_requests())
        assert len(arrivals) == 10  # the 9 pages and /sitemap.xml, read by the seed's task, politely too
        # One slot per delay for the host, shared by both processes, the first no earlier than
        # the step: request k cannot reach the site before started + k * delay, however late
        # any of them runs (a little allowance for timer resolution, not for scheduling luck).
        too_early = [(k, at - started) for k, at in enumerate(arrivals) if at < started + k * delay - TIMER_RESOLUTION]
        assert too_early == [], arrivals


async def test_a_killed_worker_and_a_dropped_broker_recover_without_the_visibility_timeout(
    shared: CrawlerSettings, amqp_url: str, tmp_path: Path
) -> None:
    # A lease left to the visibility timeout would outlast the test's wait (120 s): the crawl
    # completes only if what the broker lost is republished at once.
    patient = shared.model_copy(update={"visibility_timeout": 600.0})
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    proxied = patient.model_copy(
        update={"amqp_url": amqp_url.replace(broker.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")}
    )
    try:
        async with (
            serve_site() as site,
            running_crawler(proxied, run_workers=False) as c,
            worker_processes(proxied, 2, tmp_path) as workers,
        ):

            async def kill_and_cut() -> None:
                workers[0].kill()
                assert proxy.cut() > 0

            job_id = await crawl_through(c, site, kill_and_cut)
            await assert_exact_result(c, site, job_id)
    finally:
        await proxy.close()


async def leases_of(pg_url: str, job_id: str, pid: int, since: datetime) -> int:
    """The job's tasks the worker with this pid leased since `since` and has not settled."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM crawler.crawl_urls WHERE job_id = $1 AND state = 'queued' AND published_at >= $2"
            " AND leased_by LIKE $3",
            job_id,
            since,
            f"worker:%:{pid}:%",
        )
        return int(count)
    finally:
        await conn.close()


async def test_a_worker_killed_before_its_tasks_reach_the_broker_recovers_without_the_visibility_timeout(
    shared: CrawlerSettings, pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    # The worker's broker connection is held (nothing it sends lands) while it goes on settling,
    # so it commits leases whose tasks never reach the broker; it is SIGKILLed as soon as it has,
    # long before its publish would time out and give them back. The broker has nothing to
    # redeliver: only its silent heartbeat tells the pump. With the visibility timeout at 600 s,
    # the crawl completes within the wait below (which includes a new worker's start) only if the
    # silence is acted on (QUAERO_PUBLISHER_TIMEOUT, 5 s).
    patient = shared.model_copy(update={"visibility_timeout": 600.0})
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    proxied = patient.model_copy(
        update={"amqp_url": amqp_url.replace(broker.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")}
    )
    try:
        async with serve_site() as site, running_crawler(patient, run_workers=False) as c:
            async with worker_processes(proxied, 1, tmp_path) as (worker,):

                async def hold_then_kill() -> None:
                    held_at = datetime.now(UTC)
                    proxy.hold()
                    for _ in range(500):
                        if await leases_of(pg_url, job_id, worker.proc.pid, held_at):
                            worker.kill()
                            return
                        await asyncio.sleep(0.01)
                    raise AssertionError("the worker leased nothing while its broker connection was held")

                (job_id,) = accepted_ids(await run_step(c.stub, step_call(SLOW, sources=[site_source(site.base)])))
                await wait_until_settled(c, job_id, 12)
                await hold_then_kill()
            await proxy.close()  # the dead worker's connection closes: the broker requeues its deliveries
            (tmp_path / "replacement").mkdir()
            async with worker_processes(patient, 1, tmp_path / "replacement"):
                await assert_exact_result(c, site, job_id, timeout=90)
    finally:
        await proxy.close()
