"""The recrawl bench: crawl the bench site, recrawl it unchanged, then edit 2% of its pages and
recrawl again; pages/s and CPU seconds of each crawl, every change label checked.

The site serves validators (bench/site.py `validator(i)`: a third of the pages with an ETag, a
third with only Last-Modified, a third with neither), so an unchanged recrawl must get a 304 for
exactly the pages with validators (checked per URL, like the labels) and compare content for the
rest. CPU is counted per process group (bench/cpu.py): Quaero (the worker processes with their
children, and this one, which runs the crawler server: its pump and its RunSteps stream),
PostgreSQL and RabbitMQ as whole servers, and PostgreSQL's backends of the bench's database
alone. The target: the unchanged recrawl costs at most a fifth of the first crawl's CPU, all
processes counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from bench import cpu
from bench.quaero import _start_worker, pool_started, stop_stack
from bench.site import NO_VALIDATOR, changed, page_path, serve, validator
from libs.db import Database
from libs.grpc_server import open_channel
from quaero.v1 import crawl_job_pb2, crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler import server as crawler_server
from services.crawler.settings import CrawlerSettings
from tests.support.crawler import step_call
from tests.support.databases import scratch_database

TARGET = 0.2
DEPTH = 5


@dataclass
class Crawl:
    name: str
    pages: int
    seconds: float
    cpu: cpu.Spent
    labels: Counter[str]
    not_modified: int
    # What the labels got wrong (empty: every label as expected).
    wrong: list[str]

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def cpu_seconds(self) -> float:
        """All processes: Quaero, PostgreSQL, RabbitMQ."""
        return self.cpu.all


async def _labels(stub: crawler_service_pb2_grpc.CrawlerServiceStub, job_id: str) -> tuple[dict[str, str], set[str]]:
    """url -> change label of every URL the job stored or found unchanged, and the URLs that
    answered 304."""
    labels: dict[str, str] = {}
    not_modified: set[str] = set()
    offset = 0
    while True:
        page = await stub.ListCrawlUrls(
            crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id, limit=500, offset=offset)
        )
        for u in page.urls:
            if u.change:
                labels[u.url] = (
                    crawl_job_pb2.DocumentChangeKind.Name(u.change).removeprefix("DOCUMENT_CHANGE_KIND_").lower()
                )
            if u.http_status == 304:
                not_modified.add(u.url)
        offset += len(page.urls)
        if offset >= page.total_count or not page.urls:
            return labels, not_modified


async def run(pages: int, *, database_url: str, amqp_url: str, workers: int = 2, depth: int = DEPTH) -> list[Crawl]:
    """The three crawls of one site by one crawler and `workers` worker processes."""
    crawls: list[Crawl] = []
    with serve(pages, validators=True) as site:
        expected_pages = {site.base + page_path(i) for i in range(pages)}
        edited = {site.base + page_path(i) for i in range(pages) if changed(i)}
        validated = {site.base + page_path(i) for i in range(pages) if validator(i) != NO_VALIDATOR}
        # Each crawl's name, what it does to the site first, the label each page must get, and
        # the pages that must answer 304 (those served with validators that did not change).
        plans: list[tuple[str, Callable[[], None], Callable[[str], str], set[str]]] = [
            ("first crawl", lambda: None, lambda _url: "new", set()),
            ("unchanged recrawl", lambda: None, lambda _url: "unchanged", validated),
            (
                f"recrawl, {len(edited)} pages changed",
                site.change,
                lambda u: "changed" if u in edited else "unchanged",
                validated - edited,
            ),
        ]
        async with _quaero(database_url, amqp_url, workers) as (stub, processes):
            for name, before, expected, expected_304 in plans:
                before()
                call = step_call(
                    {"start_urls": [site.base + "/"], "max_depth": depth, "max_pages": 1_000_000, "concurrency": 16},
                    job_definition_id="recrawl-bench",
                )
                cpu_before = await processes.snapshot()
                started = time.perf_counter()
                finished = await _run_step(stub, call)
                seconds = time.perf_counter() - started
                spent = cpu.spent(cpu_before, await processes.snapshot())
                labels, not_modified = await _labels(stub, finished.jobs[0].crawl_job_id)
                wrong = [
                    f"{u}: {labels.get(u)} (expected {expected(u)})"
                    for u in sorted(expected_pages)
                    if labels.get(u) != expected(u)
                ]
                wrong += [f"{u}: {labels[u]} (not a page of the site)" for u in sorted(set(labels) - expected_pages)]
                wrong += [f"{u}: no 304 (it has validators)" for u in sorted(expected_304 - not_modified)]
                wrong += [f"{u}: 304 (expected a full answer)" for u in sorted(not_modified - expected_304)]
                crawls.append(
                    Crawl(name, len(labels), seconds, spent, Counter(labels.values()), len(not_modified), wrong)
                )
    return crawls


class _Processes:
    """CPU snapshots of the bench's processes: this one, the workers, and the PostgreSQL backends
    of the bench's database (read from pg_stat_activity at each snapshot)."""

    def __init__(self, db: Database, workers: list[int]) -> None:
        self.db, self.workers = db, workers

    async def snapshot(self) -> cpu.Snapshot:
        async with self.db.read() as session:
            rows = await session.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            )
            backends = list(rows.scalars())
        return await asyncio.to_thread(cpu.snapshot, self.workers, backends)


@contextlib.asynccontextmanager
async def _quaero(
    database_url: str, amqp_url: str, workers: int
) -> AsyncIterator[tuple[crawler_service_pb2_grpc.CrawlerServiceStub, _Processes]]:
    """A crawler server in this process and `workers` worker processes, on a scratch database."""
    async with scratch_database(database_url, "crawler") as db_url:
        settings = CrawlerSettings(
            database_url=db_url,
            amqp_url=amqp_url,
            crawler_port=0,
            queue_name=f"quaero.bench.{uuid.uuid4().hex[:10]}",
            log_level="WARNING",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
        env |= {"QUAERO_DATABASE_URL": db_url, "QUAERO_AMQP_URL": amqp_url, "QUAERO_QUEUE_NAME": settings.queue_name}
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(crawler_server.serve(settings, stop, ready.set_result, run_workers=False))
        logs = Path(tempfile.mkdtemp(prefix="quaero-recrawl-"))
        procs: list[asyncio.subprocess.Process] = []
        watching = Database(db_url, "crawler", pool_size=1)
        try:
            port = await asyncio.wait_for(ready, 60)
            procs = list(await asyncio.gather(*(_start_worker(env, logs / f"worker-{i}.log") for i in range(workers))))
            # The workers' start-up (their parse pools importing the modules) is no crawl's CPU.
            await asyncio.gather(*(pool_started(logs / f"worker-{i}.log") for i in range(workers)))
            channel = open_channel(f"127.0.0.1:{port}")
            try:
                yield crawler_service_pb2_grpc.CrawlerServiceStub(channel), _Processes(watching, [p.pid for p in procs])
            finally:
                await channel.close()
        finally:
            await watching.close()
            await stop_stack(procs, stop, server, amqp_url, settings)
            shutil.rmtree(logs, ignore_errors=True)


async def _run_step(
    stub: crawler_service_pb2_grpc.CrawlerServiceStub, call: crawler_service_pb2.StepCall
) -> crawler_service_pb2.StepFinished:
    done = asyncio.Event()

    async def requests() -> AsyncIterator[crawler_service_pb2.RunStepsRequest]:
        yield crawler_service_pb2.RunStepsRequest(call=call)
        await done.wait()

    try:
        async for response in stub.RunSteps(requests()):
            if response.event.HasField("finished"):
                finished = response.event.finished
                if not finished.ok:
                    raise RuntimeError(f"the crawl did not succeed: {finished.error}")
                return finished
    finally:
        done.set()
    raise RuntimeError("the crawl's stream ended without a finished event")


def report(crawls: list[Crawl]) -> list[str]:
    """The table of one run: CPU seconds per process group, and each crawl's CPU as a share of
    the first's, all processes counted and Quaero with its own database's backends alone."""
    first = crawls[0].cpu
    lines = [
        "| crawl | pages | pages/s | CPU s: Quaero | PostgreSQL (own db) | PostgreSQL (server) | RabbitMQ | all |"
        " all / first | Quaero+own db / first | 304s | labels | labels and 304s exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in crawls:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(c.labels.items()))
        lines.append(
            f"| {c.name} | {c.pages} | {c.pages_per_second:.0f} | {c.cpu.quaero:.2f} | {c.cpu.postgres_own:.2f} |"
            f" {c.cpu.postgres:.2f} | {c.cpu.rabbitmq:.2f} | {c.cpu.all:.2f} | {c.cpu.all / (first.all or 1e-9):.2f} |"
            f" {c.cpu.own / (first.own or 1e-9):.2f} | {c.not_modified} | {labels} | {'yes' if not c.wrong else 'NO'} |"
        )
    ratio = crawls[1].cpu.all / (first.all or 1e-9)
    verdict = "met" if ratio <= TARGET else "MISSED"
    lines.append(
        f"\nunchanged recrawl / first crawl CPU, all processes: {ratio:.2f} (target at most {TARGET:.2f}: {verdict});"
        f" Quaero and its database's backends alone: {crawls[1].cpu.own / (first.own or 1e-9):.2f}"
    )
    return lines
