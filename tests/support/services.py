"""Run the real services in the test's event loop, each on port 0, talking real gRPC."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cli.up import Serve, migrate_all, start_service
from libs.grpc_server import GrpcAccess, open_channel
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc
from services.crawler import server as crawler_server
from services.crawler.settings import CrawlerSettings
from services.executor import server as executor_server
from services.executor.settings import ExecutorSettings
from services.gateway import server as gateway_server
from services.gateway.settings import GatewaySettings


@contextlib.asynccontextmanager
async def running(serve: Serve, name: str) -> AsyncIterator[int]:
    """Start `serve` as `quaero up` does, yield its port once it listens, stop it (gracefully) afterwards."""
    stop = asyncio.Event()
    task, port = await start_service(name, serve, stop, timeout=60)
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def common_settings(database_url: str | None, data_dir: Path, amqp_url: str | None = None) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "data_dir": data_dir,
        "bind_host": "127.0.0.1",
        "shutdown_grace": 2.0,
    }


async def migrate_for(common: dict[str, Any]) -> None:
    """Embedded (SQLite) stacks are migrated like `quaero up` does; PostgreSQL clones are migrated.

    A fresh data directory gets copies of SQLite files this process migrated once (what the
    PostgreSQL template is to PostgreSQL): the same schema, without running every migration
    again for each test. Files already there are migrated in place."""
    settings = CrawlerSettings(**common)
    if settings.database_url is not None:
        return
    if not _sqlite_templates:
        folder = Path(tempfile.mkdtemp(prefix="quaero-sqlite-template-"))
        atexit.register(shutil.rmtree, folder, True)
        await migrate_all(CrawlerSettings(database_url=None, data_dir=folder).database_url_for)
        _sqlite_templates.append(folder)
    if not _copy_sqlite_template(_sqlite_templates[0], settings.data_dir.resolve()):
        await migrate_all(settings.database_url_for)


SQLITE_SERVICES = ("executor", "crawler")
# One TLS context for every stack's client: httpx builds a context of its own per client
# otherwise, loading the CA bundle again (25 ms of CPU each), for a gateway served over plain HTTP.
TLS = ssl.create_default_context()
_sqlite_templates: list[Path] = []


def _copy_sqlite_template(template: Path, data_dir: Path) -> bool:
    """Copy the migrated files into a data directory that has none yet; False if it has some."""
    if any((data_dir / f"{service}.db").exists() for service in SQLITE_SERVICES):
        return False
    # The engine that migrated them is disposed: each file is whole, no write-ahead log beside it.
    assert all(p.stat().st_size == 0 for p in template.glob("*-wal")), list(template.iterdir())
    data_dir.mkdir(parents=True, exist_ok=True)
    for service in SQLITE_SERVICES:
        shutil.copyfile(template / f"{service}.db", data_dir / f"{service}.db")
    return True


@dataclass
class Stack:
    """A running crawler, executor and gateway with clients for each."""

    crawler_port: int
    executor_port: int
    gateway_port: int
    gateway_grpc_port: int
    http: httpx.AsyncClient
    executor: executor_service_pb2_grpc.ExecutorServiceStub
    crawler: crawler_service_pb2_grpc.CrawlerServiceStub
    # The executor's database (for tests that arrange state the API refuses to create).
    database_url: str
    # The token and TLS the services use (and the stubs above, like every internal caller).
    access: GrpcAccess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


@contextlib.asynccontextmanager
async def running_stack(
    common: dict[str, Any], *, clock: Any = None, **executor_overrides: Any
) -> AsyncIterator[Stack]:
    await migrate_for(common)
    crawler_settings = CrawlerSettings(**common, crawler_port=0)
    async with running(lambda s, r: crawler_server.serve(crawler_settings, s, r), "crawler") as crawler_port:
        executor_settings = ExecutorSettings(
            **common, executor_port=0, crawler_addr=f"127.0.0.1:{crawler_port}", **executor_overrides
        )
        async with running(
            lambda s, r: executor_server.serve(executor_settings, s, r, clock=clock), "executor"
        ) as executor_port:
            gateway_settings = GatewaySettings(
                **common,
                gateway_port=0,
                gateway_grpc_port=0,
                crawler_addr=f"127.0.0.1:{crawler_port}",
                executor_addr=f"127.0.0.1:{executor_port}",
            )
            grpc_port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            async with (
                running(
                    lambda s, r: gateway_server.serve(gateway_settings, s, r, on_grpc_ready=grpc_port.set_result),
                    "gateway",
                ) as gateway_port,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}", timeout=30, verify=TLS) as http,
            ):
                access = GrpcAccess.from_settings(gateway_settings)
                executor_channel = open_channel(f"127.0.0.1:{executor_port}", access)
                crawler_channel = open_channel(f"127.0.0.1:{crawler_port}", access)
                try:
                    yield Stack(
                        crawler_port=crawler_port,
                        executor_port=executor_port,
                        gateway_port=gateway_port,
                        gateway_grpc_port=grpc_port.result(),
                        http=http,
                        executor=executor_service_pb2_grpc.ExecutorServiceStub(executor_channel),
                        crawler=crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel),
                        database_url=executor_settings.database_url_for("executor"),
                        access=access,
                    )
                finally:
                    await executor_channel.close()
                    await crawler_channel.close()
