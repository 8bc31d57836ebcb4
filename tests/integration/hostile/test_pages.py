"""Hostile pages and robots.txt from local sites, crawled through the real stack: a link that
makes a pattern backtrack catastrophically, compression bombs as robots.txt and as pages,
robots.txt redirecting to another host and in a loop, a redirect to a refused address. Each URL
ends exactly as it should, memory stays bounded and /healthz keeps answering throughout."""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import AsyncIterator
from typing import Any

import brotli

from services.crawler.fetch import ROBOTS_MAX_BYTES
from tests.support.hostile import health_answers, memory_stays_under
from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack, running_stack
from tests.support.site import LocalSite, Page

# What each bomb inflates to; the crawl's cap for a page is QUAERO_MAX_BODY_BYTES (10 MiB).
BOMB_BYTES = 256 << 20
# What the whole crawl may add to the test process (sites, stack and all) at its peak.
MEMORY_LIMIT = 96 << 20
EVIL = "/" + "a" * 28 + "!"  # Python's re: 2^28 steps for (a+)+$ (25 s); RE2: one pass
ROBOTS_HEAD = "User-agent: *\nDisallow: /early/\n"
# A rule beyond the first 500 KiB: ignored.
ROBOTS_LATE = ROBOTS_HEAD + "# padding\n" * (ROBOTS_MAX_BYTES // 10) + "Disallow: /late/\n"


@functools.cache
def bomb(encoding: str) -> bytes:
    """ROBOTS_LATE and then newlines up to BOMB_BYTES, compressed (a quarter of a MiB, or less)."""
    block = b"\n" * (1 << 20)
    if encoding == "br":
        compressor = brotli.Compressor(quality=5)
        parts = [compressor.process(ROBOTS_LATE.encode())]
        parts += [compressor.process(block) for _ in range(BOMB_BYTES >> 20)]
        return b"".join([*parts, compressor.finish()])
    z = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    parts = [z.compress(ROBOTS_LATE.encode()), *(z.compress(block) for _ in range(BOMB_BYTES >> 20))]
    return b"".join([*parts, z.flush()])


def bomb_page(encoding: str, content_type: str = "text/html") -> Page:
    return Page(body=bomb(encoding), content_type=content_type, headers={"Content-Encoding": encoding})


def redirect(location: str) -> Page:
    return Page(status=302, headers={"Location": location})


@contextlib.asynccontextmanager
async def serving(*sites: LocalSite) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for site in sites:
            await stack.enter_async_context(site.serve())
        yield


async def frontier(stack: Stack, execution_id: str) -> dict[str, tuple[str, str]]:
    (job,) = (await stack.http.get("/api/jobs", params={"execution_id": execution_id})).json()["jobs"]
    urls = (await stack.http.get(f"/api/jobs/{job['id']}/urls", params={"limit": 500})).json()["urls"]
    return {u["url"]: (u["state"], u["reason"]) for u in urls}


async def test_hostile_pages_and_robots_txt_end_as_they_should_with_bounded_memory(backend: dict[str, Any]) -> None:
    # Sites on 127.0.0.1 (ports apart, so each has its own robots.txt) and an "internal" one on
    # 127.0.0.2, which the fetch guard refuses.
    hostile, moved, looping, elsewhere = LocalSite(), LocalSite(), LocalSite(), LocalSite()
    internal = LocalSite(host="127.0.0.2")
    async with serving(hostile, moved, looping, elsewhere, internal):
        hostile.pages["/robots.txt"] = bomb_page("gzip", "text/plain")
        hostile.add(
            "/",
            "Hostile",
            [EVIL, "/aaaa", "/early/page.html", "/late/page.html", "/bomb-gzip.html", "/bomb-deflate.html",
             "/bomb-br.html", moved.url("/"), looping.url("/"), "/to-internal"],
        )  # fmt: skip
        hostile.add("/aaaa", "Matches (a+)+$")
        hostile.add("/early/page.html", "Disallowed in the first 500 KiB")
        hostile.add("/late/page.html", "Disallowed only after 500 KiB")
        for encoding in ("gzip", "deflate", "br"):
            hostile.pages[f"/bomb-{encoding}.html"] = bomb_page(encoding)
        hostile.pages["/to-internal"] = redirect(internal.url("/secret.html"))
        moved.pages["/robots.txt"] = redirect(f"http://localhost:{elsewhere.port}/robots.txt")
        moved.add("/", "Robots moved to another host")
        elsewhere.robots_txt = "User-agent: *\nDisallow: /\n"
        looping.pages["/robots.txt"] = redirect("/robots.txt?again")
        looping.pages["/robots.txt?again"] = redirect("/robots.txt")
        looping.add("/", "Robots in a loop")
        internal.add("/secret.html", "Internal")
        config = {
            "start_urls": [hostile.url("/")],
            "include_patterns": ["(a+)+$", r"\.html$", "/$", "internal"],
            "allowed_domains": ["127.0.0.2"],
        }

        async with running_stack({**backend, "fetch_deny": ["127.0.0.2/32"]}) as stack:
            await define(stack, {"id": "hostile", "steps": [{"name": "crawl", "action": "crawl", "config": config}]})
            with memory_stays_under(MEMORY_LIMIT):
                async with health_answers(stack.base_url):
                    started = await execute(stack, "hostile")
                    execution = await wait_for(stack, started["execution_id"], timeout=120)
            urls = await frontier(stack, started["execution_id"])

    assert execution["status"] == "completed", execution
    h = hostile.url
    assert urls == {
        h("/"): ("done", ""),
        h(EVIL): ("skipped", "pattern"),
        h("/aaaa"): ("done", ""),
        h("/early/page.html"): ("skipped", "robots"),
        h("/late/page.html"): ("done", ""),
        h("/bomb-gzip.html"): ("skipped", "too_large"),
        h("/bomb-deflate.html"): ("skipped", "too_large"),
        h("/bomb-br.html"): ("skipped", "too_large"),
        moved.url("/"): ("done", ""),
        looping.url("/"): ("done", ""),
        h("/to-internal"): ("done", ""),
        internal.url("/secret.html"): ("skipped", "blocked_address"),
    }
    assert elsewhere.requests == []  # robots.txt moved to another host: not followed
    assert looping.hits["/robots.txt"] + looping.hits["/robots.txt?again"] == 6  # the first and 5 redirects
    assert internal.requests == []  # refused before any connection
