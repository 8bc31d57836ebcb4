"""A generated site for benchmarks: N HTML pages in a tree with cross links, served fast.

Page i links to its ten children (10i+1 .. 10i+10), to the home page, to three "related"
pages elsewhere in the site, to one page under /private/ (disallowed by robots.txt) and to an
external site. Every page is reachable within depth 4 for N up to 11110.

With `validators`, a third of the pages carry an ETag, a third only a Last-Modified date and a
third neither (`validator(i)` says which), and a conditional request that matches gets a 304;
`Served.change()` then edits 2% of the pages (`changed(i)`), whose validators change with them
(the recrawl bench).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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


def changed(i: int) -> bool:
    """The pages `Served.change()` edits: one in fifty."""
    return i % 50 == 1


ETAG, LAST_MODIFIED, NO_VALIDATOR = "etag", "last_modified", ""


def validator(i: int) -> str:
    """What page i is served with (a site served with validators): an ETag (a third of the
    pages), only a Last-Modified date (a third), or neither (a third; ETAG, LAST_MODIFIED,
    NO_VALIDATOR). A conditional request for a page with either that matches gets a 304."""
    return (ETAG, LAST_MODIFIED, NO_VALIDATOR)[i % 3]


def _validators(i: int, generation: int) -> dict[bytes, bytes]:
    kind = validator(i)
    if kind == ETAG:
        return {b"ETag": f'"p{i}-g{generation}"'.encode()}
    if kind == LAST_MODIFIED:
        return {b"Last-Modified": f"Tue, 0{1 + generation} Dec 2026 10:00:00 GMT".encode()}
    return {}


def expected_urls(base: str, n: int) -> set[str]:
    return {base + page_path(i) for i in range(n)}


def _response(
    body: bytes,
    content_type: bytes = b"text/html; charset=utf-8",
    status: bytes = b"200 OK",
    headers: dict[bytes, bytes] | None = None,
) -> bytes:
    extra = b"".join(k + b": " + v + b"\r\n" for k, v in (headers or {}).items())
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n" + extra + b"Connection: keep-alive\r\n\r\n" + body
    )  # fmt: skip


@dataclass
class _Version:
    """One path's answers in one generation of the site."""

    full: bytes
    not_modified: bytes
    etag: bytes | None
    last_modified: bytes | None

    def answer(self, head: bytes) -> bytes:
        if self.etag is None and self.last_modified is None:
            return self.full
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"if-none-match" in headers:
            return self.not_modified if headers[b"if-none-match"] == self.etag else self.full
        if self.last_modified is not None and headers.get(b"if-modified-since") == self.last_modified:
            return self.not_modified
        return self.full


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: enough for GETs of pre-rendered responses."""

    def __init__(
        self,
        responses: dict[bytes, bytes],
        not_found: bytes,
        latency: float,
        versions: list[dict[bytes, _Version]] | None = None,
        generation: Any = None,
    ) -> None:
        self.responses, self.not_found, self.latency = responses, not_found, latency
        self.versions, self.generation = versions, generation
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
            if self.versions is not None and (version := self.versions[self.generation.value].get(path)):
                response = version.answer(head)
            else:
                response = self.responses.get(path, self.not_found)
            if self.latency:
                self.loop.call_later(self.latency, self._write, response)
            else:
                self._write(response)

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


def _version(i: int, n: int, generation: int) -> _Version:
    body = render(i, n)
    if generation and changed(i):
        body = body.replace(b"</main>", b"<p>Edited since the first crawl.</p></main>")
    validators = _validators(i, generation if changed(i) else 0)
    return _Version(
        full=_response(body, headers=validators),
        not_modified=_response(b"", status=b"304 Not Modified", headers=validators),
        etag=validators.get(b"ETag"),
        last_modified=validators.get(b"Last-Modified"),
    )


def _serve(sock: socket.socket, n: int, latency: float, validators: bool, generation: Any) -> None:
    responses = {page_path(i).encode(): _response(render(i, n)) for i in range(n)}
    responses[b"/robots.txt"] = _response(ROBOTS, b"text/plain")
    not_found = _response(b"not found", b"text/plain", b"404 Not Found")
    versions = [{page_path(i).encode(): _version(i, n, g) for i in range(n)} for g in (0, 1)] if validators else None

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: _Http(responses, not_found, latency, versions, generation), sock=sock
        )
        await server.serve_forever()

    # uvloop: the server shares the machine with the crawler measured, so it should cost little.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@dataclass
class Served:
    base: str
    n: int
    generation: Any = None

    def change(self) -> None:
        """Edit the CHANGED pages (a site served with validators only)."""
        self.generation.value = 1


@contextmanager
def serve(n: int, latency: float = 0.0, *, validators: bool = False) -> Iterator[Served]:
    """Serve the site from its own process on 127.0.0.1 (a free port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    generation = context.Value("i", 0, lock=False)
    process = context.Process(target=_serve, args=(sock, n, latency, validators, generation), daemon=True)
    process.start()
    sock.close()
    try:
        yield Served(f"http://127.0.0.1:{port}", n, generation)
    finally:
        process.terminate()
        process.join(5)
