"""`quaero up`: gateway, executor, crawler (and its workers) in one process, each on its own port."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from libs.migrate import migrate
from services.crawler import server as crawler_server
from services.crawler.settings import CrawlerSettings
from services.executor import server as executor_server
from services.executor.settings import ExecutorSettings
from services.gateway import server as gateway_server
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


async def migrate_all(database_url_for: Callable[[str], str]) -> None:
    """Run every service's migrations (the compose file's one-shot `migrate`)."""
    await migrate(database_url_for("executor"), "executor", executor_server.MIGRATIONS)
    await migrate(database_url_for("crawler"), "crawler", crawler_server.MIGRATIONS)


Serve = Callable[[asyncio.Event, Callable[[int], None]], Coroutine[Any, Any, None]]


async def start_service(
    name: str, serve: Serve, stop: asyncio.Event, timeout: float | None = None
) -> tuple[asyncio.Task[None], int]:
    """Start one service and wait until it listens; returns its task and port. If it stops, or
    does not listen within `timeout` seconds, it is stopped and the reason raised."""
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_ready(port: int) -> None:
        if not ready.done():
            ready.set_result(port)

    task = asyncio.create_task(serve(stop, on_ready), name=name)
    pending: set[asyncio.Future[Any]] = {task, ready}
    await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        stop.set()
        await task  # raises what stopped it
        raise RuntimeError(f"{name} stopped before it was ready")
    return task, ready.result()


async def run_embedded(stop: asyncio.Event, announce: Callable[[str], None] = lambda _: None) -> None:
    crawler = CrawlerSettings()
    executor = ExecutorSettings()
    gateway = GatewaySettings()
    if crawler.database_url and not crawler.amqp_url:
        log.info("QUAERO_AMQP_URL is unset: using the in-process queue")
    await migrate_all(crawler.database_url_for)

    tasks: list[asyncio.Task[None]] = []
    try:
        task, crawler_port = await start_service(
            "crawler", lambda s, r: crawler_server.serve(crawler, s, r, run_workers=True), stop
        )
        tasks.append(task)
        executor.crawler_addr = f"127.0.0.1:{crawler_port}"
        task, executor_port = await start_service("executor", lambda s, r: executor_server.serve(executor, s, r), stop)
        tasks.append(task)
        gateway.crawler_addr = executor.crawler_addr
        gateway.executor_addr = f"127.0.0.1:{executor_port}"
        task, gateway_port = await start_service("gateway", lambda s, r: gateway_server.serve(gateway, s, r), stop)
        tasks.append(task)
        storage = "PostgreSQL" if crawler.database_url else f"SQLite in {crawler.data_dir.resolve()}"
        queue = "RabbitMQ" if crawler.amqp_url else "an in-process queue"
        host = "127.0.0.1" if gateway.bind_host in ("0.0.0.0", "::") else gateway.bind_host
        announce(
            f"Quaero is up on http://{host}:{gateway_port} (API docs at /docs) — {storage}, {queue}; "
            f"executor :{executor_port}, crawler :{crawler_port}. Ctrl-C stops it."
        )
        # Stop everything when asked, or as soon as any service dies.
        stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done - {stopper}:
            if task.exception():
                log.error("service stopped unexpectedly", extra={"task": task.get_name()}, exc_info=task.exception())
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        print(f"quaero: {failures[0]}", file=sys.stderr)
        raise SystemExit(1)
