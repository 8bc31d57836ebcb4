"""Crawl a benchmark site with Quaero: PostgreSQL, RabbitMQ, the crawler and N worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.amqp import RabbitQueue
from libs.db import Database
from libs.grpc_server import open_channel
from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler import server as crawler_server
from services.crawler.queue import queue_spec
from services.crawler.settings import CrawlerSettings
from services.crawler.store import LEVELS
from tests.support.crawler import job_documents, step_call
from tests.support.databases import scratch_database

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    pages: int
    seconds: float
    urls: set[str]
    peak_worker_rss_mb: float
    worker_cpu_seconds: float
    # With tree_rss: the peak PSS of a worker with its descendants.
    peak_worker_pss_mb: float = 0.0
    # Pages stored per quarter second from the job's start: stalls and the ramp at a glance.
    timeline: list[int] = field(default_factory=list)
    # When the pages stored are not the ones expected: what the frontier says of the difference.
    diagnosis: str = ""
    # With cpu_groups: CPU seconds over the crawl by process group (CpuGroups.GROUPS).
    cpu_by_group: dict[str, float] = field(default_factory=dict)

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds


def _proc_status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeRss:
    """The peak RSS of one process with all its descendants (a worker and its browser's
    processes), the largest tree of those given, sampled every `interval` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        self.pids, self.interval = pids, interval
        # RSS summed counts the pages Chromium's processes share once per process; PSS shares
        # them out, so its sum is what the tree really holds.
        self.peak_mb = self.peak_pss_mb = 0.0

    def sample(self) -> None:
        import psutil

        for pid in self.pids:
            rss = pss = 0
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        info = proc.memory_full_info()
                        rss += info.rss
                        pss += getattr(info, "pss", info.rss)
            except psutil.Error:
                continue
            self.peak_mb = max(self.peak_mb, rss / 2**20)
            self.peak_pss_mb = max(self.peak_pss_mb, pss / 2**20)

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)


def _cmdlines() -> Iterator[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


class CpuGroups:
    """CPU seconds of a crawl by process group, from /proc: the workers with their descendants
    (the process pool parsing large pages), the crawler server (this process, which also runs the
    bench's gRPC client), the PostgreSQL backends serving the crawl's database (found by the
    database name in their process titles) and the RabbitMQ broker (its whole beam.smp: shared
    with anything else using it). Processes are sampled every `interval` seconds, so those that
    start during the crawl count too (one that ends loses its last interval). PostgreSQL's
    background processes (WAL writer, checkpointer) are shared and left out."""

    GROUPS = ("workers", "crawler server", "PostgreSQL backends", "RabbitMQ (whole broker)")

    def __init__(self, workers: list[int], database: str, interval: float = 0.25) -> None:
        self.workers, self.database, self.interval = workers, database, interval
        self.broker = [pid for pid, cmd in _cmdlines() if "beam.smp" in cmd and "rabbit" in cmd]
        # (group, pid) -> CPU seconds when the crawl began (0 for processes started since), and when last seen.
        self._start: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}

    def _members(self) -> Iterator[tuple[str, int]]:
        import psutil

        for pid in self.workers:
            yield "workers", pid
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    yield "workers", child.pid
        yield "crawler server", os.getpid()
        marker = f" {self.database} "
        for pid, cmd in _cmdlines():
            if cmd.startswith("postgres:") and marker in cmd:
                yield "PostgreSQL backends", pid
        for pid in self.broker:
            yield "RabbitMQ (whole broker)", pid

    def sample(self) -> None:
        for key in self._members():
            with contextlib.suppress(OSError, IndexError, ValueError):
                self._last[key] = _cpu_seconds(key[1])

    def begin(self) -> None:
        self.sample()
        self._start = dict(self._last)

    def end(self) -> dict[str, float]:
        self.sample()
        totals = dict.fromkeys(self.GROUPS, 0.0)
        for (group, pid), last in self._last.items():
            totals[group] += last - self._start.get((group, pid), 0.0)
        return totals

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)


async def stop_stack(
    procs: list[asyncio.subprocess.Process],
    stop: asyncio.Event,
    server: Awaitable[None],
    amqp_url: str,
    settings: CrawlerSettings,
) -> None:
    """End a bench crawl's processes: workers by SIGTERM (killed after 20 s), then the crawler
    server, then the crawl's queue."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), 20)
        except TimeoutError:
            p.kill()
    stop.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server, 30)
    queue = await RabbitQueue.connect(amqp_url, queue_spec(settings))
    await queue.delete()
    await queue.close()


async def _start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.crawler.worker", cwd=ROOT, env=env, stdout=handle, stderr=handle
    )
    handle.close()
    for _ in range(1200):
        if "crawl worker consuming" in await asyncio.to_thread(log.read_text, errors="replace"):
            return proc
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    output = await asyncio.to_thread(log.read_text, errors="replace")
    raise RuntimeError(f"worker did not start:\n{output[-3000:]}")


async def pool_started(log: Path, timeout: float = 120.0) -> None:
    """Until the worker logging to `log` says its parse pool has started: the pool's processes
    import the worker's modules (seconds of CPU without a bytecode cache), which is no crawl's
    CPU, and would otherwise fall in whichever crawl is running."""
    for _ in range(int(timeout / 0.05)):
        if "parse pool started" in await asyncio.to_thread(log.read_text, errors="replace"):
            return
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _reading(db_url: str) -> AsyncIterator[AsyncSession]:
    """A read transaction on the crawl's database, for a look at it after the crawl."""
    db = Database(db_url, "crawler", pool_size=1)
    try:
        async with db.read() as session:
            yield session
    finally:
        await db.close()


async def _timeline(db_url: str, job_id: str) -> list[int]:
    """Pages stored in each quarter second since the job was created (from crawl_urls)."""
    async with _reading(db_url) as session:
        rows = await session.execute(
            text(
                "SELECT floor(extract(epoch FROM u.updated_at - j.created_at) * 4)::int AS slot, count(*) AS n"
                " FROM crawl_urls u JOIN crawl_jobs j ON j.id = u.job_id"
                " WHERE u.job_id = :job_id AND u.document_id IS NOT NULL GROUP BY slot ORDER BY slot"
            ),
            {"job_id": job_id},
        )
        counts = {r.slot: r.n for r in rows}
    return [counts.get(slot, 0) for slot in range(max(counts, default=-1) + 1)]


async def _diagnosis(db_url: str, job_id: str, missing: set[str]) -> str:
    """The frontier's rows of the pages expected but not stored, and the job's warnings."""
    async with _reading(db_url) as session:
        rows = await session.execute(
            text(
                "SELECT url, state, reason, detail, attempts, document_id IS NOT NULL AS stored FROM crawl_urls"
                " WHERE job_id = :job_id AND url = ANY(:urls) ORDER BY url LIMIT 10"
            ),
            {"job_id": job_id, "urls": sorted(missing)},
        )
        urls = [tuple(r) for r in rows]
        logs = await session.execute(
            text("SELECT message FROM job_logs WHERE job_id = :job_id AND level >= :warn ORDER BY id LIMIT 10"),
            {"job_id": job_id, "warn": LEVELS["warn"]},
        )
        warnings = list(logs.scalars())
    return f"frontier rows of missing pages {urls}; warnings {warnings}"


async def crawl(
    base: str,
    depth: int,
    *,
    database_url: str,
    amqp_url: str,
    workers: int = 2,
    concurrency: int = 16,
    expected: set[str] | None = None,
    config: dict[str, object] | None = None,
    env_extra: dict[str, str] | None = None,
    tree_rss: bool = False,
    cpu_groups: bool = False,
    start: str = "/",
    disturb: Callable[[list[asyncio.subprocess.Process]], Coroutine[Any, Any, None]] | None = None,
) -> Result:
    """Crawl `base` + `start` to `depth` and return pages/s (from the step call to its `finished`
    event); with `cpu_groups`, the CPU of each process group over the crawl (CpuGroups)."""
    async with scratch_database(database_url, "crawler") as db_url:
        settings = CrawlerSettings(
            database_url=db_url,
            amqp_url=amqp_url,
            crawler_port=0,
            queue_name=f"quaero.bench.{uuid.uuid4().hex[:10]}",
            log_level="WARNING",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
        env |= {
            "QUAERO_DATABASE_URL": db_url,
            "QUAERO_AMQP_URL": amqp_url,
            "QUAERO_QUEUE_NAME": settings.queue_name,
            **(env_extra or {}),
        }
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(crawler_server.serve(settings, stop, ready.set_result, run_workers=False))
        logs = Path(tempfile.mkdtemp(prefix="quaero-bench-"))
        kept = True  # the workers' logs, unless the crawl succeeds
        procs: list[asyncio.subprocess.Process] = []
        try:
            port = await asyncio.wait_for(ready, 60)
            procs = list(await asyncio.gather(*(_start_worker(env, logs / f"worker-{i}.log") for i in range(workers))))
            channel = open_channel(f"127.0.0.1:{port}")
            stub = crawler_service_pb2_grpc.CrawlerServiceStub(channel)
            call = step_call(
                {
                    "start_urls": [base + start],
                    "max_depth": depth,
                    "max_pages": 1_000_000,
                    "concurrency": concurrency,
                    **(config or {}),
                },
                job_definition_id="bench",
            )
            done = asyncio.Event()

            async def requests() -> AsyncIterator[crawler_service_pb2.RunStepsRequest]:
                yield crawler_service_pb2.RunStepsRequest(call=call)
                await done.wait()

            cpu_before = sum(_cpu_seconds(p.pid) for p in procs)
            sampler = TreeRss([p.pid for p in procs]) if tree_rss else None
            sampling = asyncio.create_task(sampler.run()) if sampler else None
            groups = CpuGroups([p.pid for p in procs], db_url.rsplit("/", 1)[1]) if cpu_groups else None
            if groups is not None:
                groups.begin()
            counting = asyncio.create_task(groups.run()) if groups else None
            started = time.perf_counter()
            # A fault injected during the crawl (bench/disturbed.py); the result counts it in.
            fault: asyncio.Task[None] | None = asyncio.create_task(disturb(procs)) if disturb else None
            finished = None
            async for response in stub.RunSteps(requests()):
                if response.event.HasField("finished"):
                    finished = response.event.finished
                    break
            seconds = time.perf_counter() - started
            if sampling is not None:
                sampling.cancel()
            if counting is not None:
                counting.cancel()
            cpu_by_group = groups.end() if groups is not None else {}
            done.set()
            if fault is not None:
                await fault
            procs_alive = [p for p in procs if p.returncode is None]
            if finished is None or not finished.ok:
                raise RuntimeError(f"the crawl did not succeed: {finished}")
            cpu = sum(_cpu_seconds(p.pid) for p in procs_alive) - cpu_before * len(procs_alive) / len(procs)
            peak = sampler.peak_mb if sampler else max(_proc_status(p.pid, "VmHWM") for p in procs_alive)
            job = finished.jobs[0]
            urls = set(await job_documents(stub, job.crawl_job_id))
            await channel.close()
            result = Result(
                pages=len(urls),
                seconds=seconds,
                urls=urls,
                peak_worker_rss_mb=peak,
                worker_cpu_seconds=cpu,
                peak_worker_pss_mb=sampler.peak_pss_mb if sampler else 0.0,
                timeline=await _timeline(db_url, job.crawl_job_id),
                cpu_by_group=cpu_by_group,
            )
            if expected is not None and urls != expected:
                result.diagnosis = await _diagnosis(db_url, job.crawl_job_id, expected - urls)
            kept = False
            return result
        finally:
            await stop_stack(procs, stop, server, amqp_url, settings)
            if kept:
                print(f"the workers' logs are in {logs}", file=sys.stderr)
            else:
                shutil.rmtree(logs, ignore_errors=True)
