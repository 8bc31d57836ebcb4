"""Executor benchmarks: execute -> 202 latency under a steady request rate, and the delay from a
parent's success to its post-job's start.

The services run as separate processes on PostgreSQL and RabbitMQ (the production topology); the
load comes from this process. Definitions have one cheap step (`reindex` with `dry_run`) so that
crawling does not share the machine with the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import httpx

from libs.grpc_server import open_channel
from quaero.v1 import executor_service_pb2 as ex
from quaero.v1 import executor_service_pb2_grpc
from tests.support.databases import scratch_database
from tests.support.processes import Process, service_env

CHEAP = [{"name": "count", "action": "reindex", "config": {"dry_run": True}}]


@dataclass
class LatencyResult:
    rate: float
    seconds: float
    sent: int
    errors: int
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class PostJobResult:
    delays_ms: list[float]


@contextlib.contextmanager
def services(database_url: str, amqp_url: str, logs: Path) -> Iterator[tuple[str, str]]:
    """Crawler, executor and gateway processes; yields (gateway URL, executor address)."""
    env = service_env(database_url, amqp_url, f"quaero.bench.{uuid.uuid4().hex[:10]}", QUAERO_LOG_LEVEL="WARNING")
    procs: list[Process] = []
    try:
        env["QUAERO_LOG_LEVEL"] = "INFO"  # the ready lines are INFO
        crawler = Process.module("services.crawler.server", env, logs / "crawler.log")
        procs.append(crawler)
        env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler.port()}"
        executor = Process.module("services.executor.server", env, logs / "executor.log")
        procs.append(executor)
        env["QUAERO_EXECUTOR_ADDR"] = f"127.0.0.1:{executor.port()}"
        gateway = Process.module("services.gateway.server", env, logs / "gateway.log")
        procs.append(gateway)
        ready = gateway.wait_for_log("gateway listening")
        yield f"http://{ready['address']}", env["QUAERO_EXECUTOR_ADDR"]
    finally:
        for proc in reversed(procs):
            proc.stop()


async def _define(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await http.post("/api/job-definitions", json={"type": "custom", "name": body["id"], **body})
    response.raise_for_status()


async def execute_latency(base_url: str, rate: float, seconds: float) -> LatencyResult:
    """Open-loop load: request i is sent at t0 + i/rate whatever earlier ones are doing.

    The client is aiohttp: it shares the machine with Quaero, and costs a fraction of httpx's
    CPU per request."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _define(http, {"id": "cheap", "steps": CHEAP})
    url = f"{base_url}/api/job-definitions/cheap/execute"
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(50):  # warm connections and caches
            async with session.post(url) as response:
                response.raise_for_status()
        latencies: list[float] = []
        errors = 0

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.post(url) as response:
                    await response.read()
                    if response.status != 202:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)

        total = int(rate * seconds)
        t0 = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return LatencyResult(rate=total / elapsed, seconds=elapsed, sent=total, errors=errors, latencies_ms=latencies)


async def _event_times(
    executor: executor_service_pb2_grpc.ExecutorServiceStub, execution_id: str
) -> dict[str, datetime]:
    times: dict[str, datetime] = {}
    async for message in executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id, replay=True)):
        times.setdefault(message.event.type, message.event.created_at.ToDatetime())
    return times


async def post_job_delay(base_url: str, executor_addr: str, runs: int) -> PostJobResult:
    """Parent success (steps_succeeded) -> post-job execution started, over `runs` parents."""
    channel = open_channel(executor_addr)
    executor = executor_service_pb2_grpc.ExecutorServiceStub(channel)
    delays: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            await _define(http, {"id": "child", "steps": CHEAP})
            await _define(http, {"id": "parent", "steps": CHEAP, "post_jobs": ["child"]})
            for _ in range(runs):
                parent_id = (await http.post("/api/job-definitions/parent/execute")).json()["execution_id"]
                parent = await _event_times(executor, parent_id)  # returns once the parent is terminal
                detail = await executor.GetExecution(ex.GetExecutionRequest(id=parent_id))
                [child] = detail.execution.post_jobs.triggered
                child_times = await _event_times(executor, child.execution_id)
                delays.append((child_times["started"] - parent["steps_succeeded"]).total_seconds() * 1000)
    finally:
        await channel.close()
    return PostJobResult(delays_ms=delays)


async def run(
    admin_url: str, amqp_url: str, *, rate: float = 100.0, seconds: float = 20.0, runs: int = 30
) -> tuple[LatencyResult, PostJobResult]:
    with tempfile.TemporaryDirectory(prefix="quaero-bench-") as logs:
        async with scratch_database(admin_url, "executor", "crawler") as url:
            with services(url, amqp_url, Path(logs)) as (base_url, executor_addr):
                latency = await execute_latency(base_url, rate, seconds)
                delays = await post_job_delay(base_url, executor_addr, runs)
    return latency, delays


def report(latency: LatencyResult, delays: PostJobResult) -> list[str]:
    d = sorted(delays.delays_ms)
    return [
        "| executor | result | target |",
        "|---|---|---|",
        f"| execute → 202 at {latency.rate:.0f} req/s ({latency.sent} requests, {latency.errors} errors) | "
        f"p50 {latency.percentile(50):.1f} ms, p99 {latency.percentile(99):.1f} ms, "
        f"max {max(latency.latencies_ms):.1f} ms | p99 < 20 ms |",
        f"| parent success → post-job started ({len(d)} runs) | p50 {statistics.median(d):.1f} ms, "
        f"p99 {d[min(len(d) - 1, round(0.99 * (len(d) - 1)))]:.1f} ms, max {d[-1]:.1f} ms | < 100 ms |",
    ]


def main() -> None:
    import os

    admin = os.environ.get("QUAERO_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    amqp = os.environ.get("QUAERO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    latency, delays = asyncio.run(run(admin, amqp))
    print("\n".join(report(latency, delays)))


if __name__ == "__main__":
    main()
