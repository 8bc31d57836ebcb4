"""The executor process: job definitions, sources, executions and schedules over gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from libs.db import Database
from libs.grpc_server import insecure_channel, run_process, start_grpc_server
from libs.logs import configure_logging, service_var
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2, executor_service_pb2_grpc
from services.executor.loader import load_directory
from services.executor.service import ActionCatalog, Catalogue, ExecutorServicer
from services.executor.settings import ExecutorSettings
from services.executor.store import ExecutorStore

log = logging.getLogger(__name__)

SERVICE_NAME = executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


async def serve(settings: ExecutorSettings, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until `stop` is set. Migrations must already have run."""
    service_var.set("executor")
    async with AsyncExitStack() as stack:
        db = Database(settings.database_url_for("executor"), "executor")
        await db.start()
        stack.push_async_callback(db.close)

        crawler_channel = insecure_channel(settings.crawler_addr)
        stack.push_async_callback(crawler_channel.close)
        actions = ActionCatalog(crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel))
        await actions.wait_ready()

        catalogue = Catalogue(ExecutorStore(db), actions)
        if settings.definitions_dir:
            loaded, rejected = await load_directory(catalogue, settings.definitions_dir)
            log.info(
                "definitions directory loaded",
                extra={"dir": str(settings.definitions_dir), "loaded": loaded, "rejected": rejected},
            )

        server = await start_grpc_server(
            f"{settings.bind_host}:{settings.executor_port}",
            [
                (
                    ExecutorServicer(catalogue),
                    executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server,
                    SERVICE_NAME,
                )
            ],
            service="executor",
        )
        stack.push_async_callback(server.stop, settings.shutdown_grace)
        if on_ready:
            on_ready(server.port)
        await stop.wait()
        log.info("executor shutting down")


def main() -> None:
    settings = ExecutorSettings()
    configure_logging("executor", settings.log_level)
    settings.require_shared_infrastructure(amqp=False)
    run_process(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
