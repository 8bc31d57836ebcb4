"""Drive a real crawler: start it on port 0, send StepCalls over RunSteps, read the frontier back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from libs.amqp import InProcessQueue
from libs.db import Database
from libs.grpc_server import open_channel
from quaero.v1 import crawl_job_pb2, crawler_service_pb2, crawler_service_pb2_grpc, job_definition_pb2, source_pb2
from services.crawler import server as crawler_server
from services.crawler.actions.crawl import DEFAULTS
from services.crawler.queue import queue_spec
from services.crawler.settings import CrawlerSettings
from services.crawler.store import TERMINAL, CrawlJobRow, CrawlStore, JobSpec, retrying
from services.crawler.worker import Worker
from services.crawler.worker import running_worker as worker_running
from tests.support.services import migrate_for, running
from tests.support.site import LocalSite

# Short timings so retries, leases and the pump act within a test's patience.
FAST = {
    "retry_backoff": 0.2,
    "visibility_timeout": 4.0,
    "pump_interval": 0.2,
    "fetch_timeout": 10.0,
    # In-flight fetches get this long when a test's crawler stops (a page held at a gate never ends).
    "shutdown_grace": 2.0,
}


def crawler_settings(common: dict[str, Any], **overrides: Any) -> CrawlerSettings:
    values = {**common, "crawler_port": 0, "queue_name": f"quaero.test.{uuid.uuid4().hex[:12]}", **FAST}
    values.update(overrides)
    return CrawlerSettings(**values)


@dataclass
class Crawler:
    stub: crawler_service_pb2_grpc.CrawlerServiceStub
    settings: CrawlerSettings
    port: int


@contextlib.asynccontextmanager
async def running_crawler(
    settings: CrawlerSettings, *, run_workers: bool | None = None, worker_hooks: dict[str, Any] | None = None
) -> AsyncIterator[Crawler]:
    await migrate_for({"database_url": settings.database_url, "data_dir": settings.data_dir})
    async with running(
        lambda s, r: crawler_server.serve(settings, s, r, run_workers=run_workers, worker_hooks=worker_hooks),
        "crawler",
    ) as port:
        channel = open_channel(f"127.0.0.1:{port}")
        try:
            yield Crawler(crawler_service_pb2_grpc.CrawlerServiceStub(channel), settings, port)
        finally:
            await channel.close()


def source(source_id: str, base_url: str, **fields: Any) -> source_pb2.Source:
    return source_pb2.Source(id=source_id, name=source_id, type=source_pb2.SOURCE_TYPE_WEB, base_url=base_url, **fields)


def step_call(
    config: dict[str, Any],
    *,
    sources: Sequence[source_pb2.Source] = (),
    action: str = "crawl",
    execution_id: str | None = None,
    step_index: int = 0,
    attempt: int = 1,
    job_definition_id: str = "test-definition",
) -> crawler_service_pb2.StepCall:
    struct = struct_pb2.Struct()
    struct.update(config)
    return crawler_service_pb2.StepCall(
        execution_id=execution_id or uuid.uuid4().hex,
        job_definition_id=job_definition_id,
        step_index=step_index,
        attempt=attempt,
        step=job_definition_pb2.JobStep(name="crawl", action=action, config=struct),
        sources=list(sources),
    )


async def run_step(
    stub: crawler_service_pb2_grpc.CrawlerServiceStub, call: crawler_service_pb2.StepCall, *, timeout: float = 120
) -> list[crawler_service_pb2.StepEvent]:
    """Send one StepCall on a new stream; return its events up to and including `finished`."""
    events: list[crawler_service_pb2.StepEvent] = []
    done = asyncio.Event()

    async def requests() -> AsyncIterator[crawler_service_pb2.RunStepsRequest]:
        yield crawler_service_pb2.RunStepsRequest(call=call)
        await done.wait()

    stream = stub.RunSteps(requests(), timeout=timeout)
    try:
        async for response in stream:
            events.append(response.event)
            if response.event.HasField("finished"):
                break
    finally:
        done.set()
        stream.cancel()
    return events


def accepted_ids(events: Sequence[crawler_service_pb2.StepEvent]) -> list[str]:
    first = events[0]
    assert first.HasField("accepted"), events
    return [j.crawl_job_id for j in first.accepted.jobs]


async def frontier(stub: crawler_service_pb2_grpc.CrawlerServiceStub, job_id: str) -> dict[str, tuple[str, str]]:
    """canonical URL -> (state, reason) of every URL the job recorded."""
    out: dict[str, tuple[str, str]] = {}
    offset = 0
    while True:
        page = await stub.ListCrawlUrls(
            crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id, limit=500, offset=offset)
        )
        for u in page.urls:
            state = crawl_job_pb2.CrawlUrlState.Name(u.state).removeprefix("CRAWL_URL_STATE_").lower()
            out[u.url] = (state, u.reason)
        offset += len(page.urls)
        if offset >= page.total_count or not page.urls:
            return out


async def job_documents(stub: crawler_service_pb2_grpc.CrawlerServiceStub, job_id: str) -> list[str]:
    urls: list[str] = []
    offset = 0
    while True:
        page = await stub.ListDocuments(
            crawler_service_pb2.ListDocumentsRequest(job_id=job_id, limit=500, offset=offset)
        )
        urls.extend(d.url for d in page.documents)
        offset += len(page.documents)
        if offset >= page.total_count or not page.documents:
            return urls


async def wait_for_status(
    stub: crawler_service_pb2_grpc.CrawlerServiceStub, job_id: str, *, timeout: float = 90
) -> crawl_job_pb2.CrawlJob:
    """Poll until the job is terminal (tests that do not hold a RunSteps stream)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (await stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))).crawl_job
        if job.status not in (crawl_job_pb2.CRAWL_JOB_STATUS_RUNNING, crawl_job_pb2.CRAWL_JOB_STATUS_PENDING):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still running: {job.progress}")
        await asyncio.sleep(0.1)


def status_name(job: crawl_job_pb2.CrawlJob) -> str:
    return crawl_job_pb2.CrawlJobStatus.Name(job.status).removeprefix("CRAWL_JOB_STATUS_").lower()


def assert_counters_match(job: crawl_job_pb2.CrawlJob, urls: dict[str, tuple[str, str]], documents: int) -> None:
    """The job's counters are exactly what its frontier holds."""
    states = [s for s, _ in urls.values()]
    p = job.progress
    assert p.skipped_urls == states.count("skipped")
    assert p.total_urls == len(states) - states.count("skipped")
    assert p.completed_urls == states.count("done") + states.count("failed")
    assert p.failed_urls == states.count("failed")
    assert p.pending_urls == states.count("queued")
    assert job.result_count == documents


@contextlib.asynccontextmanager
async def crawler_database(common: dict[str, Any], **options: Any) -> AsyncIterator[Database]:
    """The crawler's database for these settings, migrated (SQLite) or cloned migrated (PostgreSQL)."""
    await migrate_for(common)
    db = Database(CrawlerSettings(**common).database_url_for("crawler"), "crawler", **options)
    await db.start()
    try:
        yield db
    finally:
        await db.close()


def job_spec(seeds: Sequence[str], **fields: Any) -> JobSpec:
    """A crawl job as the crawl action would plan it (built-in defaults)."""
    return JobSpec(
        name=fields.pop("name", "test"),
        source_id=fields.pop("source_id", "test-source"),
        source_type="web",
        config={**DEFAULTS, **fields.pop("config", {})},
        source_snapshot={},
        auth=fields.pop("auth", None),
        seed_urls=list(seeds),
        metadata=fields.pop("metadata", {}),
        **fields,
    )


async def wait_for_job(store: CrawlStore, job_id: str, *, timeout: float = 90) -> CrawlJobRow:
    """Poll the store until the job is terminal (a bound for hangs, not a speed check); reads
    are retried like the crawler's, for tests that break the database's connections."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (job := await retrying("reading a job", lambda: store.get_job(job_id))).status not in TERMINAL:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still {job.status}")
        await asyncio.sleep(0.05)
    return job


@contextlib.asynccontextmanager
async def running_worker(db: Database, settings: CrawlerSettings, **hooks: Any) -> AsyncIterator[Worker]:
    """One worker consuming an in-process queue of its own (`worker.queue`)."""
    queue = InProcessQueue(queue_spec(settings))
    try:
        async with worker_running(db, queue, settings, **hooks) as worker:
            yield worker
    finally:
        await queue.close()


async def site_waiting(site: LocalSite, requests: int) -> None:
    """Until at least `requests` page requests wait at the site's gate."""
    async with asyncio.timeout(30):
        while site.waiting < requests:  # noqa: ASYNC110 - the site counts; there is nothing to wait on
            await asyncio.sleep(0.01)


async def site_answered(site: LocalSite, requests: int) -> None:
    """Until the site answered at least `requests` page requests."""
    async with asyncio.timeout(30):
        while site.answered < requests:  # noqa: ASYNC110 - the site counts; there is nothing to wait on
            await asyncio.sleep(0.01)


async def event_types(settings: CrawlerSettings, job_id: str) -> list[str]:
    """The types of a job's events, oldest first, read from its database."""
    from sqlalchemy import select

    from services.crawler.store import EVENTS

    db = Database(settings.database_url_for("crawler"), "crawler", pool_size=1)
    try:
        async with db.read() as session:
            rows = await session.execute(select(EVENTS.c.type).where(EVENTS.c.job_id == job_id).order_by(EVENTS.c.id))
            return list(rows.scalars())
    finally:
        await db.close()
