"""A generated site for benchmarks: N HTML pages in a tree with cross links, served fast.

Page i links to its ten children (10i+1 .. 10i+10), to the home page, to three "related"
pages elsewhere in the site, to one page under /private/ (disallowed by robots.txt) and to an
external site. Every page is reachable within depth 4 for N up to 11110.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvloop

ROBOTS = b"User-agent: *\nDisallow: /private/\n"
WORDS = [
    "crawler",
    "frontier",
    "queue",
    "worker",
    "document",
    "markdown",
    "index",
    "search",
    "page",
    "link",
    "depth",
    "robots",
    "budget",
    "host",
    "politeness",
    "retry",
    "lease",
    "settle",
    "commit",
    "publish",
    "acknowledge",
    "broker",
    "database",
    "schema",
    "transaction",
]


def page_path(i: int) -> str:
    return "/" if i == 0 else f"/page/{i}.html"


def render(i: int, n: int) -> bytes:
    rng = random.Random(i)
    children = [c for c in range(10 * i + 1, 10 * i + 11) if c < n]
    related = [rng.randrange(n) for _ in range(3)]
    links = [page_path(c) for c in children] + [page_path(0)] + [page_path(r) for r in related]
    links += [f"/private/{i}.html", "https://external.example/ref"]
    paragraphs = "".join(f"<p>{' '.join(rng.choice(WORDS) for _ in range(60))}.</p>" for _ in range(6))
    items = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Page {i}</title>'
        f'<meta name="description" content="Benchmark page {i}"></head><body>'
        f'<nav><a href="/">Home</a></nav><main><h1>Page {i}</h1>{paragraphs}<h2>Links</h2><ul>{items}</ul>'
        f"</main></body></html>"
    ).encode()


def expected_urls(base: str, n: int) -> set[str]:
    return {base + page_path(i) for i in range(n)}


def _response(body: bytes, content_type: bytes = b"text/html; charset=utf-8", status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body
    )  # fmt: skip


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: enough for GETs of pre-rendered responses."""

    def __init__(self, responses: dict[bytes, bytes], not_found: bytes, latency: float) -> None:
        self.responses, self.not_found, self.latency = responses, not_found, latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            parts = head.split(b" ", 2)
            path = parts[1] if len(parts) > 1 else b"/"
            response = self.responses.get(path, self.not_found)
            if self.latency:
                self.loop.call_later(self.latency, self._write, response)
            else:
                self._write(response)

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


def _serve(sock: socket.socket, n: int, latency: float) -> None:
    responses = {page_path(i).encode(): _response(render(i, n)) for i in range(n)}
    responses[b"/robots.txt"] = _response(ROBOTS, b"text/plain")
    not_found = _response(b"not found", b"text/plain", b"404 Not Found")

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _Http(responses, not_found, latency), sock=sock)
        await server.serve_forever()

    # uvloop: the server shares the machine with the crawler measured, so it should cost little.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@dataclass
class Served:
    base: str
    n: int


@contextmanager
def serve(n: int, latency: float = 0.0) -> Iterator[Served]:
    """Serve the site from its own process on 127.0.0.1 (a free port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, n, latency), daemon=True)
    process.start()
    sock.close()
    try:
        yield Served(f"http://127.0.0.1:{port}", n)
    finally:
        process.terminate()
        process.join(5)
