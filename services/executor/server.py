"""The executor process: job definitions, sources, executions and schedules over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from libs import metrics
from libs.db import Database
from libs.fetch_guard import FetchGuard
from libs.grpc_server import GrpcAccess, open_channel, run_process, start_grpc_server
from libs.logs import configure_logging, service_var
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2, executor_service_pb2_grpc
from services.executor.cancels import CrawlCancels
from services.executor.catalogue import ActionCatalog, Catalogue
from services.executor.executions import Executions
from services.executor.ledger import Ledger
from services.executor.loader import load_directory
from services.executor.outbox import Outbox
from services.executor.postjobs import PostJobs
from services.executor.runner import Runner
from services.executor.scheduler import Clock, Scheduler
from services.executor.service import ExecutorServicer
from services.executor.settings import ExecutorSettings
from services.executor.store import ExecutorStore
from services.executor.webhooks import DeliveryPolicy, WebhookSender

log = logging.getLogger(__name__)

SERVICE_NAME = executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> None:
    """Run `run()` until `stop` is set. If it raises, or returns before `stop`, log it and run it
    again after a pause that doubles up to `max_backoff` (and starts over after a long healthy run):
    a background loop that dies must not take a replica's leases or schedules with it silently."""
    delay = backoff
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run()
        except Exception:
            log.exception("background task failed; restarting", extra={"task": name, "delay": delay})
        else:
            if stop.is_set():
                return
            log.error("background task ended unexpectedly; restarting", extra={"task": name, "delay": delay})
        if time.monotonic() - started > max_backoff:
            delay = backoff
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_backoff)


async def serve(
    settings: ExecutorSettings,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
    *,
    clock: Clock | None = None,
) -> None:
    """Serve until `stop` is set. Migrations must already have run."""
    service_var.set("executor")
    async with AsyncExitStack() as stack:
        db = Database(settings.database_url_for("executor"), "executor")
        await db.start()
        stack.push_async_callback(db.close)

        access = GrpcAccess.from_settings(settings)
        crawler_channel = open_channel(settings.crawler_addr, access)
        stack.push_async_callback(crawler_channel.close)
        crawler = crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel)
        actions = ActionCatalog(crawler)
        await actions.wait_ready()

        store = ExecutorStore(db)
        guard = FetchGuard.from_settings(settings)
        catalogue = Catalogue(store, actions, guard)
        if settings.definitions_dir:
            loaded, rejected = await load_directory(catalogue, settings.definitions_dir)
            log.info(
                "definitions directory loaded",
                extra={"dir": str(settings.definitions_dir), "loaded": loaded, "rejected": rejected},
            )

        # Post-jobs are triggered through our own gRPC API at the advertised address, so with
        # several replicas any of them may run them. The address is known once we listen.
        self_stub: list[executor_service_pb2_grpc.ExecutorServiceStub] = []

        async def trigger_post_jobs(execution_id: str) -> None:
            await self_stub[0].TriggerPostJobs(
                executor_service_pb2.TriggerPostJobsRequest(parent_execution_id=execution_id), timeout=30
            )

        owner = instance_id()
        ledger = Ledger(db)
        cancels = CrawlCancels(db, crawler)
        runner = Runner(
            ledger,
            store,
            crawler,
            owner=owner,
            lease_seconds=settings.execution_lease_seconds,
            trigger_post_jobs=trigger_post_jobs,
            cancel_confirmed=cancels.confirmed,
        )
        executions = Executions(ledger, catalogue, runner, owner=owner, lease_seconds=settings.execution_lease_seconds)
        outbox = Outbox(db)
        servicer = ExecutorServicer(catalogue, executions, PostJobs(ledger, executions), outbox)
        server = await start_grpc_server(
            f"{settings.bind_host}:{settings.executor_port}",
            [(servicer, executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server, SERVICE_NAME)],
            service="executor",
            access=access,
        )
        stack.push_async_callback(server.stop, settings.shutdown_grace)
        self_addr = settings.executor_self_addr or f"127.0.0.1:{server.port}"
        self_channel = open_channel(self_addr, access)
        stack.push_async_callback(self_channel.close)
        self_stub.append(executor_service_pb2_grpc.ExecutorServiceStub(self_channel))
        # Unwinds before the server stops: the runner refuses new executions, its drivers stop
        # with their ledger writes finished, and their leases go back for another replica. RPCs
        # finishing in the server's grace period after that hand what they start back at once.
        stack.push_async_callback(executions.shutdown)

        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "leases": lambda: executions.maintain(stop),
            "catalogue-changes": lambda: store.watch_changes(stop),
            "webhooks": lambda: WebhookSender(outbox, guard, _delivery_policy(settings)).run(stop),
            "crawl-cancels": lambda: cancels.run(stop),
        }
        if settings.scheduler_enabled:
            scheduler = Scheduler(store, ledger, executions, clock)
            loops["scheduler"] = lambda: scheduler.run(stop)
        background = [asyncio.create_task(supervise(name, run, stop), name=name) for name, run in loops.items()]
        log.info("executor ready", extra={"owner": owner, "self_addr": self_addr})
        if on_ready:
            on_ready(server.port)
        await stop.wait()
        log.info("executor shutting down")
        # Shutdown order: NOT_SERVING at once; the loops that start executions (scheduler,
        # recovery) end; then the exit stack: executions.shutdown, the server's grace period,
        # the channels, the database.
        await server.health.enter_graceful_shutdown()
        await asyncio.gather(*background, return_exceptions=True)


def _delivery_policy(settings: ExecutorSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout=settings.webhook_timeout_seconds,
        initial_backoff=settings.webhook_retry_initial_seconds,
        max_backoff=settings.webhook_retry_max_seconds,
        max_response_bytes=settings.webhook_max_response_bytes,
        concurrency=settings.webhook_concurrency,
    )


def main() -> None:
    settings = ExecutorSettings()
    configure_logging("executor", settings.log_level)
    settings.require_shared_infrastructure(amqp=False)
    metrics.serve_process_metrics(settings)
    run_process(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
