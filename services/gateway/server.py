"""The gateway process: REST API, Server-Sent Events, web UI and OpenAPI on one HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack

import uvicorn

from libs.grpc_server import GrpcAccess, open_channel, run_process, start_grpc_server
from libs.logs import configure_logging, service_var
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc
from services.gateway.app import create_app, warm_routes
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: the process's stop event decides (embedded mode
    runs several servers in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(
    settings: GatewaySettings,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
    on_grpc_ready: Callable[[int], None] | None = None,
) -> None:
    service_var.set("gateway")
    async with AsyncExitStack() as stack:
        access = GrpcAccess.from_settings(settings)
        executor_channel = open_channel(settings.executor_addr, access, unary_timeout=settings.rpc_timeout)
        stack.push_async_callback(executor_channel.close)
        crawler_channel = open_channel(settings.crawler_addr, access, unary_timeout=settings.rpc_timeout)
        stack.push_async_callback(crawler_channel.close)
        app = create_app(
            executor_service_pb2_grpc.ExecutorServiceStub(executor_channel),
            crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel),
            api_token=settings.api_token,
        )
        await warm_routes(app)
        # Like every service, the gateway answers gRPC health checks and reflection.
        health = await start_grpc_server(
            f"{settings.bind_host}:{settings.gateway_grpc_port}", [], service="gateway", access=access
        )
        stack.push_async_callback(health.stop, settings.shutdown_grace)
        if on_grpc_ready:
            on_grpc_ready(health.port)
        sock = _bind(settings.bind_host, settings.gateway_port)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]  # uvicorn hands it to asyncio.wait_for: seconds as a float
        )
        server = _Server(config)
        # The socket is already listening: connections wait in its backlog until uvicorn accepts.
        task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        log.info("gateway listening", extra={"address": f"{settings.bind_host}:{port}", "grpc_port": health.port})
        if on_ready:
            on_ready(port)
        await stop.wait()
        server.should_exit = True
        await task
        sock.close()


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    run_process(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
