"""A small website served on 127.0.0.1 (port 0) for tests, with knobs for slowness and failures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route


def html_page(title: str, links: list[str] = (), body: str = "") -> str:  # type: ignore[assignment]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!doctype html><html lang='en'><head><title>{title}</title>"
        f"<meta name='description' content='About {title}'></head>"
        f"<body><main><h1>{title}</h1><p>{body or 'Some words about ' + title + '.'}</p>"
        f"<ul>{anchors}</ul></main></body></html>"
    )


@dataclass
class LocalSite:
    """Pages by path. `delay` slows every page; `failures[path] = (n, status)` makes the first n
    requests for a path answer `status`; `hits` counts requests per path."""

    pages: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    failures: dict[str, tuple[int, int]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    port: int = 0
    # Requests being answered right now, and the most there ever were at once.
    active: int = 0
    max_active: int = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, title: str, links: list[str] = (), body: str = "") -> None:  # type: ignore[assignment]
        self.pages[path] = html_page(title, links, body)

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.hits[path] += 1
        if path == "/robots.txt":
            return PlainTextResponse("User-agent: *\nAllow: /\n")
        if self.delay:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.active -= 1
        failing = self.failures.get(path)
        if failing and self.hits[path] <= failing[0]:
            return PlainTextResponse("failing on purpose", status_code=failing[1])
        if path not in self.pages:
            return PlainTextResponse("not found", status_code=404)
        return HTMLResponse(self.pages[path])

    def _server(self) -> tuple[uvicorn.Server, socket.socket]:
        app = Starlette(routes=[Route("/{path:path}", self._handle)])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        return server, sock

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[LocalSite]:
        """Serve from the test's event loop."""
        server, sock = self._server()
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield self
        finally:
            server.should_exit = True
            await task
            sock.close()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[LocalSite]:
        """Serve from a thread of its own, for synchronous tests that block while processes work."""
        server, sock = self._server()
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


def small_site(pages: int = 4, prefix: str = "") -> LocalSite:
    """An index linking to `pages` leaf pages."""
    site = LocalSite()
    leaves = [f"{prefix}/page-{i}.html" for i in range(pages)]
    site.add(f"{prefix}/", f"Index {prefix}", leaves)
    for i, leaf in enumerate(leaves):
        site.add(leaf, f"Page {i} {prefix}", [f"{prefix}/"])
    return site
