"""Crawl worker processes and a TCP proxy that can cut their broker connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from services.crawler.settings import CrawlerSettings
from tests.support.processes import Process


def worker_env(settings: CrawlerSettings, **overrides: Any) -> dict[str, str]:
    """The environment of a `python -m services.crawler.worker` with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
    values = settings.model_dump()
    values.update(overrides)
    for key, value in values.items():
        if value is None:
            continue
        env[f"QUAERO_{key.upper()}"] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return env


class WorkerProcess(Process):
    """One `python -m services.crawler.worker`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__([sys.executable, "-m", "services.crawler.worker"], env, log, name="crawl worker")

    async def wait_consuming(self, timeout: float = 120) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while "crawl worker consuming" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"worker did not start:\n{self.output()}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def worker_processes(
    settings: CrawlerSettings, count: int, logs: Path, **env: Any
) -> AsyncIterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    try:
        for i in range(count):
            workers.append(WorkerProcess(worker_env(settings, **env), logs / f"worker-{i}.log"))
        for w in workers:
            await w.wait_consuming()
        yield workers
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.stop()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection it carries, `hold()`
    keeps them open but sends the target nothing more (a stalled network: publishes, acks and
    heartbeats of the client never land)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.held = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if upstream and self.held:
                        continue  # read and dropped: the client's end still sees its peer go
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self._writers.discard(dst)
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def hold(self) -> None:
        """From now on, what clients send is dropped (nothing already forwarded is taken back)."""
        self.held = True

    def cut(self) -> int:
        """Abort every open connection (both directions); new ones are accepted again."""
        dropped = len(self._writers)
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        return dropped

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.contextmanager
def proxy_in_thread(host: str, port: int) -> Iterator[tuple[TcpProxy, asyncio.AbstractEventLoop]]:
    """A TcpProxy on its own event loop in a thread: for sync code, and so that the bytes it
    copies do not wait on (nor slow) the event loop of the code under test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = TcpProxy(host, port)
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    try:
        yield proxy, loop
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
