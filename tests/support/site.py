"""Websites served on 127.0.0.1 (port 0) by the test itself, recording every request they get.

`LocalSite` serves pages by path, with knobs for slowness and failures, and a gate that holds
requests back so a test sees a crawl while it runs. `small_site()` is an index and its leaves;
`ScenarioSite` exercises every scope rule and knows the exact result a crawl of it must give.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

ROBOTS_TXT = "User-agent: *\nAllow: /\n"


def html_page(title: str, links: Sequence[str] = (), body: str = "") -> bytes:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="description" content="About {title}"></head>'
        f"<body><main><h1>{title}</h1><p>{body or 'Some words about ' + title + '.'}</p>"
        f"<ul>{anchors}</ul></main></body></html>"
    ).encode()


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds the answer takes.
    delay: float = 0.0
    # Validators it is served with; a conditional request that matches them gets a 304.
    etag: str | None = None
    last_modified: str | None = None

    def validators(self) -> dict[str, str]:
        out = {"ETag": self.etag} if self.etag else {}
        if self.last_modified:
            out["Last-Modified"] = self.last_modified
        return out

    def not_modified(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers gets a 304 (If-None-Match wins, as RFC 9110 says)."""
        if self.status != 200:
            return False
        if "If-None-Match" in headers:
            return self.etag is not None and headers["If-None-Match"] == self.etag
        return self.last_modified is not None and headers.get("If-Modified-Since") == self.last_modified


@dataclass
class LocalSite:
    """Pages by path (with the query, if any). `delay` slows every page; `failures[path] = (n,
    status)` makes the first n requests for a path answer `status` (a 429 with Retry-After: 1).

    Every request is recorded when it arrives: `requests` (time.time(), path), `seen` (host,
    path, headers), `hits` per path. Pages (not robots.txt) whose path `held` accepts wait while
    the gate is closed; `waiting` counts them. `active` counts pages being answered, `max_active`
    the most there ever were at once, `answered` those answered, `not_modified` the 304s sent (per
    path). A page at "/robots.txt" is served instead of `robots_txt`; `host` is the loopback address
    to listen on."""

    pages: dict[str, Page] = field(default_factory=dict)
    base: str = ""
    robots_txt: str = ROBOTS_TXT
    delay: float = 0.0
    failures: dict[str, tuple[int, int]] = field(default_factory=dict)
    held: Callable[[str], bool] = lambda _path: True
    requests: list[tuple[float, str]] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    waiting: int = 0
    active: int = 0
    max_active: int = 0
    answered: int = 0
    host: str = "127.0.0.1"
    _gate: asyncio.Event | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def url(self, path: str = "/") -> str:
        return self.base + path

    def add(self, path: str, title: str, links: Sequence[str] = (), body: str = "") -> None:
        self.pages[path] = Page(body=html_page(title, links, body))

    def page_requests(self) -> list[tuple[float, str]]:
        return [(t, p) for t, p in self.requests if p != "/robots.txt"]

    # --------------------------------------------------------------------------------- gate

    def close(self) -> None:
        """Hold back the pages `held` accepts until `open()` (served in the test's loop only)."""
        if self._gate is None:
            self._gate = asyncio.Event()
        self._gate.clear()

    def open(self) -> None:
        if self._gate is not None:
            self._gate.set()

    # ------------------------------------------------------------------------------ serving

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.requests.append((time.time(), path))
        self.seen.append((request.host, path, dict(request.headers)))
        self.hits[path] += 1
        if path == "/robots.txt" and path not in self.pages:
            return web.Response(text=self.robots_txt, content_type="text/plain")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self._gate is not None and not self._gate.is_set() and self.held(path):
                self.waiting += 1
                try:
                    await self._gate.wait()
                finally:
                    self.waiting -= 1
            page = self.pages.get(path)
            if page is not None and page.not_modified(request.headers):
                self.not_modified[path] += 1
                return web.Response(status=304, headers=page.validators())
            return await self._answer(path)
        finally:
            self.active -= 1
            self.answered += 1

    async def _answer(self, path: str) -> web.StreamResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        failing = self.failures.get(path)
        if failing and self.hits[path] <= failing[0]:
            headers = {"Retry-After": "1"} if failing[1] == 429 else {}
            return web.Response(status=failing[1], text="failing on purpose", headers=headers)
        page = self.pages.get(path)
        if page is None:
            return web.Response(status=404, text="no such page")
        if page.delay:
            await asyncio.sleep(page.delay)
        return web.Response(
            status=page.status,
            body=page.body,
            headers={"Content-Type": page.content_type, **page.validators(), **page.headers},
        )

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, self.host, 0)
        await tcp.start()
        port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://{self.host}:{port}"
        return runner

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[LocalSite]:
        """Serve from the test's event loop for the duration of the block."""
        runner = await self._start()
        try:
            yield self
        finally:
            self.open()
            await runner.cleanup()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[LocalSite]:
        """Serve from a thread of its own, for synchronous tests that block while processes work."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def run() -> None:
            runner = await self._start()
            started.set()
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

        thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()


def small_site(pages: int = 4, prefix: str = "") -> LocalSite:
    """An index linking to `pages` leaf pages."""
    site = LocalSite()
    leaves = [f"{prefix}/page-{i}.html" for i in range(pages)]
    site.add(f"{prefix}/", f"Index {prefix}", leaves)
    for i, leaf in enumerate(leaves):
        site.add(leaf, f"Page {i} {prefix}", [f"{prefix}/"])
    return site


# ------------------------------------------------------------------------------------ scenario

SCENARIO_ROBOTS_TXT = "User-agent: *\nDisallow: /robots-blocked/\n"
BLOG_POSTS = 12
DOCS_PAGES = 8


@dataclass
class ScenarioSite(LocalSite):
    """External links, an excluded folder (step pattern) and a drafts folder (source filter), a
    robots-disallowed folder, 404s, redirects (to a page, to a known page, to another site, in a
    loop), fragments and tracking parameters, one page spelled several ways, pages beyond the
    depth limit, a page reachable by a long and a short path, non-HTML files, a 429 with
    Retry-After, a 503 that recovers, a 500 that never does, and a slow page.

    `expected()` is the frontier a crawl with the standard config must end with: canonical URL
    -> (state, reason), whatever order the pages were fetched in."""

    robots_txt: str = SCENARIO_ROBOTS_TXT

    def build(self) -> None:
        port = self.port
        p = self.pages
        p["/"] = Page(
            body=html_page(
                "Home",
                [
                    "/docs/",
                    "/blog/",
                    "/about.html#team",
                    "/docs/?utm_source=home&utm_medium=link",
                    f"HTTP://127.0.0.1:{port}/docs/#top",
                    "/docs/./index/../",
                    "http://external.example/page",
                    "https://other.invalid/",
                    "mailto:team@example.com",
                    "ftp://files.example/archive.zip",
                    "javascript:void(0)",
                    "/private/secret.html",
                    "/drafts/next.html",
                    "/robots-blocked/page.html",
                    "/missing.html",
                    "/old-page",
                    "/to-docs",
                    "/go-external",
                    "/loop-a",
                    "/files/report.pdf",
                    "/files/logo.png",
                    "/busy.html",
                    "/flaky.html",
                    "/broken.html",
                    "/slow.html",
                    "/search.html?b=2&a=1",
                    "/chain/1.html",
                    "/shortcut.html",
                ],
            )
        )
        p["/about.html"] = Page(body=html_page("About", ["/", "/search.html?a=1&b=2&utm_campaign=x"]))
        p["/search.html?a=1&b=2"] = Page(body=html_page("Search", ["/about.html"]))
        p["/docs/"] = Page(body=html_page("Docs", [f"/docs/page-{i}.html" for i in range(DOCS_PAGES)]))
        for i in range(DOCS_PAGES):
            p[f"/docs/page-{i}.html"] = Page(
                body=html_page(
                    f"Docs page {i}", ["/docs/", f"/docs/page-{(i + 1) % DOCS_PAGES}.html", f"/docs/deep/{i}.html"]
                )
            )
            # Depth 3: its link to /docs/deeper/i.html is at depth 4, beyond max_depth.
            p[f"/docs/deep/{i}.html"] = Page(body=html_page(f"Deep {i}", [f"/docs/deeper/{i}.html"]))
            p[f"/docs/deeper/{i}.html"] = Page(body=html_page(f"Deeper {i}", []))
        p["/blog/"] = Page(body=html_page("Blog", [f"/blog/post-{i}.html" for i in range(BLOG_POSTS)]))
        for i in range(BLOG_POSTS):
            p[f"/blog/post-{i}.html"] = Page(body=html_page(f"Post {i}", ["/blog/", "/about.html"]))
        p["/private/secret.html"] = Page(body=html_page("Secret", []))
        p["/drafts/next.html"] = Page(body=html_page("Draft", []))
        p["/robots-blocked/page.html"] = Page(body=html_page("Blocked", []))
        p["/missing.html"] = Page(status=404, body=b"not found", content_type="text/plain")
        p["/old-page"] = Page(status=301, headers={"Location": "/moved.html"})
        p["/moved.html"] = Page(body=html_page("Moved here", []))
        p["/to-docs"] = Page(status=302, headers={"Location": f"{self.base}/docs/"})
        p["/go-external"] = Page(status=302, headers={"Location": "http://external.example/landing"})
        p["/loop-a"] = Page(status=302, headers={"Location": "/loop-b"})
        p["/loop-b"] = Page(status=302, headers={"Location": "/loop-a"})
        p["/files/report.pdf"] = Page(body=b"%PDF-1.4 fake", content_type="application/pdf")
        p["/files/logo.png"] = Page(body=b"\x89PNG fake", content_type="image/png")
        p["/busy.html"] = Page(body=html_page("Busy", []))
        self.failures["/busy.html"] = (1, 429)
        p["/flaky.html"] = Page(body=html_page("Flaky", []))
        self.failures["/flaky.html"] = (1, 503)
        p["/broken.html"] = Page(status=500, body=b"boom", content_type="text/plain")
        p["/slow.html"] = Page(body=html_page("Slow", []), delay=1.0)
        # A long path (root -> chain/1 -> chain/2 -> target, depth 3, links cut) and a short
        # one (root -> shortcut -> target, depth 2): the target's child must be stored either way.
        p["/chain/1.html"] = Page(body=html_page("Chain 1", ["/chain/2.html"]))
        p["/chain/2.html"] = Page(body=html_page("Chain 2", ["/target.html"]))
        p["/shortcut.html"] = Page(body=html_page("Shortcut", ["/target.html"]))
        p["/target.html"] = Page(body=html_page("Target", ["/target/child.html"]))
        p["/target/child.html"] = Page(body=html_page("Target child", ["/target/grandchild.html"]))
        p["/target/grandchild.html"] = Page(body=html_page("Grandchild", []))

    def expected(self) -> dict[str, tuple[str, str]]:
        """canonical URL -> (state, reason) after a crawl with max_depth 3, excluding
        /private/ (step) and /drafts/ (source filter), obeying robots.txt."""
        b = self.base
        done = [
            "/", "/about.html", "/search.html?a=1&b=2", "/docs/", "/blog/", "/moved.html", "/busy.html",
            "/flaky.html", "/slow.html", "/chain/1.html", "/chain/2.html", "/shortcut.html", "/target.html",
            "/target/child.html",
            *[f"/docs/page-{i}.html" for i in range(DOCS_PAGES)],
            *[f"/docs/deep/{i}.html" for i in range(DOCS_PAGES)],
            *[f"/blog/post-{i}.html" for i in range(BLOG_POSTS)],
        ]  # fmt: skip
        result = {b + path: ("done", "") for path in done}
        for path in ("/old-page", "/to-docs", "/go-external", "/loop-a", "/loop-b"):
            result[b + path] = ("done", "")
        result.update(
            {
                b + "/missing.html": ("failed", "http_status"),
                b + "/broken.html": ("failed", "http_status"),
                b + "/private/secret.html": ("skipped", "pattern"),
                b + "/drafts/next.html": ("skipped", "pattern"),
                b + "/robots-blocked/page.html": ("skipped", "robots"),
                b + "/files/report.pdf": ("skipped", "content_type"),
                b + "/files/logo.png": ("skipped", "content_type"),
                b + "/target/grandchild.html": ("skipped", "depth"),
                "http://external.example/page": ("skipped", "offsite"),
                "http://external.example/landing": ("skipped", "offsite"),
                "https://other.invalid/": ("skipped", "offsite"),
                "mailto:team@example.com": ("skipped", "scheme"),
                "ftp://files.example/archive.zip": ("skipped", "scheme"),
            }
        )
        for i in range(DOCS_PAGES):
            result[b + f"/docs/deeper/{i}.html"] = ("skipped", "depth")
        return result

    def expected_documents(self) -> set[str]:
        return {url for url, (state, _) in self.expected().items() if state == "done"} - {
            self.url(p) for p in ("/old-page", "/to-docs", "/go-external", "/loop-a", "/loop-b")
        }


@contextlib.asynccontextmanager
async def serve_site() -> AsyncIterator[ScenarioSite]:
    """Serve the scenario on 127.0.0.1 for the duration of the block."""
    site = ScenarioSite()
    async with site.serve():
        site.build()
        yield site
