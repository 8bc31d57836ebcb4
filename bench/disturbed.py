"""A crawl disturbed mid-way, next to the same crawl undisturbed: one worker SIGKILLed and every
broker connection cut (through a TCP proxy of this bench's own, so other users of the broker are
left alone) once half the undisturbed time has passed. Same pages (the exact set is checked); the
row gives the extra seconds the recovery took."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import quaero
from bench.site import expected_urls, serve
from tests.support.crawl_workers import TcpProxy, proxy_in_thread


@dataclass
class Row:
    pages: int
    undisturbed_seconds: float
    disturbed_seconds: float
    exact: bool

    @property
    def extra_seconds(self) -> float:
        return self.disturbed_seconds - self.undisturbed_seconds


async def _run(base: str, depth: int, database_url: str, amqp_url: str, workers: int, expected: set[str]) -> Row:
    broker = urlsplit(amqp_url)
    target = (broker.hostname or "127.0.0.1", broker.port or 5672)

    def through(proxy: TcpProxy) -> str:
        return amqp_url.replace(broker.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")

    # Both crawls reach the broker through a proxy on its own thread, so they differ only by the
    # fault (a proxy on this process's loop slowed every frame of the disturbed crawl alone).
    with proxy_in_thread(*target) as (proxy, _):
        calm = await quaero.crawl(base, depth, database_url=database_url, amqp_url=through(proxy), workers=workers)
    with proxy_in_thread(*target) as (proxy, loop):

        async def fault(procs: list[asyncio.subprocess.Process]) -> None:
            await asyncio.sleep(calm.seconds / 2)
            with contextlib.suppress(ProcessLookupError):
                procs[0].kill()
            loop.call_soon_threadsafe(proxy.cut)

        # One worker more, so the one killed leaves as many as the undisturbed crawl had.
        hit = await quaero.crawl(
            base, depth, database_url=database_url, amqp_url=through(proxy), workers=workers + 1, disturb=fault
        )
    return Row(len(hit.urls), calm.seconds, hit.seconds, calm.urls == expected and hit.urls == expected)


def run(pages: int, latency: float, depth: int, database_url: str, amqp_url: str, workers: int) -> list[str]:
    """The report's lines: the disturbed crawl next to the undisturbed one."""
    with serve(pages, latency) as site:
        row = asyncio.run(_run(site.base, depth, database_url, amqp_url, workers, expected_urls(site.base, pages)))
    return [
        f"disturbed crawl ({pages} pages, +{latency * 1000:g} ms per response; worker SIGKILL and broker drop"
        " at mid-crawl)\n",
        "| pages | undisturbed | disturbed | extra | exact result (both) |",
        "|---|---|---|---|---|",
        f"| {row.pages} | {row.undisturbed_seconds:.1f} s | {row.disturbed_seconds:.1f} s |"
        f" {row.extra_seconds:+.1f} s | {'yes' if row.exact else 'NO'} |",
    ]
