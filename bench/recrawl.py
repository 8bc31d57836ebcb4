"""The recrawl bench: crawl the bench site, recrawl it unchanged, then edit 2% of its pages and
recrawl again; pages/s and CPU seconds of each crawl, every change label checked.

The site serves validators (bench/site.py: a third of the pages with an ETag, a third with only
Last-Modified, a third with neither), so an unchanged recrawl gets 304s for two thirds of its
pages and compares content hashes for the rest. CPU is that of every Quaero process: the worker
processes and this one, which runs the crawler server (its pump and its RunSteps stream). The
target: the unchanged recrawl costs at most a fifth of the first crawl's CPU.
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

from bench.quaero import _cpu_seconds, _start_worker, stop_stack
from bench.site import changed, page_path, serve
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
    cpu_seconds: float
    labels: Counter[str]
    not_modified: int
    # What the labels got wrong (empty: every label as expected).
    wrong: list[str]

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


async def _labels(stub: crawler_service_pb2_grpc.CrawlerServiceStub, job_id: str) -> tuple[dict[str, str], int]:
    """url -> change label of every URL the job stored or found unchanged, and its 304s."""
    labels: dict[str, str] = {}
    not_modified = offset = 0
    while True:
        page = await stub.ListCrawlUrls(
            crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id, limit=500, offset=offset)
        )
        for u in page.urls:
            if u.change:
                labels[u.url] = (
                    crawl_job_pb2.DocumentChangeKind.Name(u.change).removeprefix("DOCUMENT_CHANGE_KIND_").lower()
                )
            not_modified += u.http_status == 304
        offset += len(page.urls)
        if offset >= page.total_count or not page.urls:
            return labels, not_modified


async def run(pages: int, *, database_url: str, amqp_url: str, workers: int = 2, depth: int = DEPTH) -> list[Crawl]:
    """The three crawls of one site by one crawler and `workers` worker processes."""
    crawls: list[Crawl] = []
    with serve(pages, validators=True) as site:
        expected_pages = {site.base + page_path(i) for i in range(pages)}
        edited = {site.base + page_path(i) for i in range(pages) if changed(i)}
        plans: list[tuple[str, Callable[[], None], Callable[[str], str]]] = [
            ("first crawl", lambda: None, lambda _url: "new"),
            ("unchanged recrawl", lambda: None, lambda _url: "unchanged"),
            (f"recrawl, {len(edited)} pages changed", site.change, lambda u: "changed" if u in edited else "unchanged"),
        ]
        async with _quaero(database_url, amqp_url, workers) as stub, _processes_cpu() as cpu:
            for name, before, expected in plans:
                before()
                call = step_call(
                    {"start_urls": [site.base + "/"], "max_depth": depth, "max_pages": 1_000_000, "concurrency": 16},
                    job_definition_id="recrawl-bench",
                )
                cpu_before = cpu()
                started = time.perf_counter()
                finished = await _run_step(stub, call)
                seconds = time.perf_counter() - started
                spent = cpu() - cpu_before
                labels, not_modified = await _labels(stub, finished.jobs[0].crawl_job_id)
                wrong = [
                    f"{u}: {labels.get(u)} (expected {expected(u)})"
                    for u in sorted(expected_pages)
                    if labels.get(u) != expected(u)
                ]
                wrong += [f"{u}: {labels[u]} (not a page of the site)" for u in sorted(set(labels) - expected_pages)]
                crawls.append(Crawl(name, len(labels), seconds, spent, Counter(labels.values()), not_modified, wrong))
    return crawls


@contextlib.asynccontextmanager
async def _processes_cpu() -> AsyncIterator[Callable[[], float]]:
    yield lambda: time.process_time() + sum(_cpu_seconds(pid) for pid in _WORKERS)


_WORKERS: list[int] = []


@contextlib.asynccontextmanager
async def _quaero(
    database_url: str, amqp_url: str, workers: int
) -> AsyncIterator[crawler_service_pb2_grpc.CrawlerServiceStub]:
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
        try:
            port = await asyncio.wait_for(ready, 60)
            procs = list(await asyncio.gather(*(_start_worker(env, logs / f"worker-{i}.log") for i in range(workers))))
            _WORKERS[:] = [p.pid for p in procs]
            channel = open_channel(f"127.0.0.1:{port}")
            try:
                yield crawler_service_pb2_grpc.CrawlerServiceStub(channel)
            finally:
                await channel.close()
        finally:
            _WORKERS.clear()
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
    first = crawls[0].cpu_seconds or 1e-9
    lines = [
        "| crawl | pages | pages/s | CPU s (all Quaero processes) | CPU / first crawl | 304s | labels | labels exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in crawls:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(c.labels.items()))
        lines.append(
            f"| {c.name} | {c.pages} | {c.pages_per_second:.0f} | {c.cpu_seconds:.2f} | {c.cpu_seconds / first:.2f} |"
            f" {c.not_modified} | {labels} | {'yes' if not c.wrong else 'NO'} |"
        )
    ratio = crawls[1].cpu_seconds / first
    verdict = "met" if ratio <= TARGET else "MISSED"
    lines.append(f"\nunchanged recrawl / first crawl CPU: {ratio:.2f} (target at most {TARGET:.2f}: {verdict})")
    return lines
