"""The crawler process: crawl jobs, the frontier, documents and step actions over gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from libs.db import Database
from libs.grpc_server import run_process, start_grpc_server
from libs.logs import configure_logging, service_var
from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler.service import CrawlerServicer
from services.crawler.settings import CrawlerSettings

log = logging.getLogger(__name__)

SERVICE_NAME = crawler_service_pb2.DESCRIPTOR.services_by_name["CrawlerService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


async def serve(settings: CrawlerSettings, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until `stop` is set. Migrations must already have run."""
    service_var.set("crawler")
    async with AsyncExitStack() as stack:
        db = Database(settings.database_url_for("crawler"), "crawler")
        await db.start()
        stack.push_async_callback(db.close)

        server = await start_grpc_server(
            f"{settings.bind_host}:{settings.crawler_port}",
            [(CrawlerServicer(), crawler_service_pb2_grpc.add_CrawlerServiceServicer_to_server, SERVICE_NAME)],
            service="crawler",
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
    run_process(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
