"""The crawler process: crawl jobs, the frontier, documents and step actions over gRPC.

It publishes URL tasks and runs the dispatch pump and the dead-letter consumer. Workers run
in-process in embedded mode (no QUAERO_AMQP_URL: the queue is in memory) or when asked
(`quaero up` on RabbitMQ); otherwise `python -m services.crawler.worker` processes do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from libs import metrics
from libs.amqp import RabbitQueue
from libs.db import Database
from libs.grpc_server import GrpcAccess, run_process, start_grpc_server
from libs.logs import configure_logging, service_var
from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler import queue as tasks_queue
from services.crawler.publishers import Heartbeat
from services.crawler.pump import DeadLetters, Pump
from services.crawler.service import CrawlerServicer
from services.crawler.settings import CrawlerSettings
from services.crawler.settle import Settler
from services.crawler.store import PG_SESSION_SETTINGS, CrawlStore, give_back_every_lease
from services.crawler.worker import running_worker

log = logging.getLogger(__name__)

SERVICE_NAME = crawler_service_pb2.DESCRIPTOR.services_by_name["CrawlerService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


async def serve(
    settings: CrawlerSettings,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
    *,
    run_workers: bool | None = None,
    worker_hooks: dict[str, Any] | None = None,
) -> None:
    """Serve until `stop` is set. Migrations must already have run.

    `run_workers`: consume tasks in this process too (default: only with the in-process queue,
    which nothing else can consume)."""
    service_var.set("crawler")
    if run_workers is None:
        run_workers = settings.amqp_url is None
    async with AsyncExitStack() as stack:
        db = Database(
            settings.database_url_for("crawler"),
            "crawler",
            pool_size=settings.db_pool_size + 2,
            server_settings=PG_SESSION_SETTINGS,
        )
        await db.start()
        stack.push_async_callback(db.close)
        queue = await tasks_queue.open_queue(settings, connection_name="quaero-crawler")
        stack.push_async_callback(queue.close)
        publisher: str | None = None
        if isinstance(queue, RabbitQueue):
            heartbeat = Heartbeat(db, settings.publisher_timeout, "crawler")
            await heartbeat.start()
            # Last out: after the pump and the gRPC server, whose publishes (awaited) it covers.
            stack.push_async_callback(heartbeat.stop, all_published=True)
            publisher = heartbeat.id
        else:
            # The queue is in memory: whatever a previous process published went with it.
            given = await give_back_every_lease(db)
            if given:
                log.info("%d task(s) leased before this start are published again", given)

        if run_workers:
            await stack.enter_async_context(running_worker(db, queue, settings, **(worker_hooks or {})))
        dead_letters = DeadLetters(db, queue, Settler(db, max_attempts=settings.max_attempts, publisher=publisher))
        await dead_letters.start()
        stack.push_async_callback(dead_letters.stop)
        pump_stop = asyncio.Event()
        pump = asyncio.create_task(Pump(db, queue, settings, publisher=publisher).run(pump_stop), name="crawler-pump")
        depth = asyncio.create_task(
            metrics.sample_queue_depth(settings.queue_name, queue.depth, pump_stop), name="queue-depth"
        )

        async def stop_pump() -> None:
            pump_stop.set()
            await asyncio.gather(pump, depth)

        stack.push_async_callback(stop_pump)

        store = CrawlStore(db, publisher=publisher)
        server = await start_grpc_server(
            f"{settings.bind_host}:{settings.crawler_port}",
            [
                (
                    CrawlerServicer(db, store, queue, versions_kept=settings.document_versions),
                    crawler_service_pb2_grpc.add_CrawlerServiceServicer_to_server,
                    SERVICE_NAME,
                )
            ],
            service="crawler",
            access=GrpcAccess.from_settings(settings),
        )
        stack.push_async_callback(server.stop, settings.shutdown_grace)
        if on_ready:
            on_ready(server.port)
        await stop.wait()
        log.info("crawler shutting down")


def main() -> None:
    settings = CrawlerSettings()
    configure_logging("crawler", settings.log_level)
    settings.require_shared_infrastructure(amqp=True)
    metrics.serve_process_metrics(settings)
    run_process(lambda stop: serve(settings, stop, run_workers=False))


if __name__ == "__main__":
    main()
