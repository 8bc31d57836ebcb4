"""A small website served on 127.0.0.1 by the test itself, with the exact result a crawl must give.

The site exercises every scope rule: external links, an excluded folder (step pattern) and a
drafts folder (source filter), a robots-disallowed folder, 404s, redirects (to a page, to a known
page, to another site, in a loop), fragments and tracking parameters, one page spelled several
ways, pages beyond the depth limit, a page reachable by a long and a short path, non-HTML files,
a 429 with Retry-After, a 503 that recovers, a 500 that never does, and a slow page.

`Site.expected(max_depth=3)` is the frontier a crawl with the standard config must end with:
canonical URL -> (state, reason), whatever order the pages were fetched in.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

ROBOTS_TXT = "User-agent: *\nDisallow: /robots-blocked/\n"
BLOG_POSTS = 12
DOCS_PAGES = 8


def html_page(title: str, links: list[str], body: str = "") -> bytes:
    anchors = "\n".join(f'<li><a href="{href}">link {i}</a></li>' for i, href in enumerate(links))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="description" content="About {title}"></head>'
        f'<body><nav><a href="/">home</a></nav><main><h1>{title}</h1><p>{body or "Words about " + title}.</p>'
        f"<ul>{anchors}</ul></main></body></html>"
    ).encode()


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Site:
    """The pages by path; `base` is set once the server listens."""

    base: str = ""
    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[tuple[float, str]] = field(default_factory=list)
    # (host header, path, request headers) of every request.
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    robots_txt: str = ROBOTS_TXT
    hits: Counter[str] = field(default_factory=Counter)
    slow_seconds: float = 1.0

    def url(self, path: str) -> str:
        return self.base + path

    # ------------------------------------------------------------------------------ content

    def build(self) -> None:
        port = self.base.rsplit(":", 1)[1]
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
        p["/flaky.html"] = Page(body=html_page("Flaky", []))
        p["/broken.html"] = Page(status=500, body=b"boom", content_type="text/plain")
        p["/slow.html"] = Page(body=html_page("Slow", []))
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

    # ------------------------------------------------------------------------------ serving

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.requests.append((time.time(), path))
        self.seen.append((request.host, path, dict(request.headers)))
        self.hits[path] += 1
        if path == "/robots.txt":
            return web.Response(text=self.robots_txt, content_type="text/plain")
        if path == "/busy.html" and self.hits[path] == 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        if path == "/flaky.html" and self.hits[path] == 1:
            return web.Response(status=503, text="try again")
        if path == "/slow.html":
            await asyncio.sleep(self.slow_seconds)
        page = self.pages.get(path)
        if page is None:
            return web.Response(status=404, text="no such page")
        return web.Response(
            status=page.status, body=page.body, headers={"Content-Type": page.content_type, **page.headers}
        )

    def page_requests(self) -> list[tuple[float, str]]:
        return [(t, p) for t, p in self.requests if p != "/robots.txt"]


@asynccontextmanager
async def serve_site(site: Site | None = None) -> AsyncIterator[Site]:
    """Serve a site on 127.0.0.1 (a free port) for the duration of the block."""
    site = site or Site()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", site.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site.base = f"http://127.0.0.1:{port}"
    if not site.pages:
        site.build()
    try:
        yield site
    finally:
        await runner.cleanup()
