"""Hostile sitemaps: entities, a gzip bomb, a million URLs, an index listing itself, a body that
never ends. Each is read within its caps while /healthz answers, and the crawl completes."""

from __future__ import annotations

import asyncio
import functools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from services.crawler.sitemaps import SitemapLimits
from tests.support.hostile import health_answers, memory_stays_under
from tests.support.runs import define, execute, jobs, wait_for
from tests.support.services import running_stack
from tests.support.site import LocalSite, Page

MiB = 2**20
URLSET = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'


@dataclass
class HostileSite(LocalSite):
    """/ links nowhere; /sitemap.xml is whatever `sitemap` answers."""

    sitemap: Any = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path_qs == "/sitemap.xml" and self.sitemap is not None:
            self.requests.append((0.0, request.path_qs))
            self.hits[request.path_qs] += 1
            return await self.sitemap(self, request)  # type: ignore[no-any-return]
        return await super().handle(request)


def pages_site(sitemap: Any) -> HostileSite:
    site = HostileSite(sitemap=sitemap)
    site.add("/", "Home")
    site.add("/ok", "OK")
    site.add("/leaked", "Leaked")
    return site


async def crawl(backend: dict[str, Any], site: HostileSite, **config: Any) -> dict[str, Any]:
    async with running_stack({**backend, "fetch_timeout": 3.0}) as stack:
        step = {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], **config}}
        await define(stack, {"id": "maps", "steps": [step]})
        async with health_answers(stack.base_url):
            started = await execute(stack, "maps")
            execution = await wait_for(stack, started["execution_id"], timeout=120)
        (job,) = await jobs(stack, execution_id=started["execution_id"])
    assert execution["status"] == "completed", execution
    return job


async def test_entities_are_never_expanded_nor_read_from_files(backend: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("/leaked")
    laughs = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 12))

    async def sitemap(site: HostileSite, request: web.Request) -> web.Response:
        # An external entity (XXE) that would name /leaked, if it were read.
        body = (
            f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file://{secret}">]>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{site.base}&xxe;</loc></url><url><loc>{site.base}/ok</loc></url></urlset>"
        )
        return web.Response(body=body.encode(), content_type="application/xml")

    site = pages_site(sitemap)
    async with site.serve():
        # Billion laughs: 5^11 copies of /laugh, in the sitemap robots.txt names.
        site.robots_txt = f"User-agent: *\nAllow: /\nSitemap: {site.base}/laughs.xml\n"
        site.pages["/laughs.xml"] = Page(
            body=(
                f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY l0 "/laugh">{laughs}]>'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{site.base}&l11;</loc></url><url><loc>{site.base}/ok</loc></url></urlset>"
            ).encode(),
            content_type="application/xml",
        )
        with memory_stays_under(200 * MiB):
            job = await crawl(backend, site)

    assert site.hits["/laughs.xml"] == 1 and site.hits["/sitemap.xml"] == 1
    assert site.hits["/ok"] == 1  # the XXE sitemap was read
    assert site.hits["/leaked"] == 0  # its external entity was not
    assert not any(p.startswith("/laugh") and p != "/laughs.xml" for _, p in site.requests)
    assert job["result_count"] == 2


@functools.cache
def gzip_bomb(base: str) -> bytes:
    """A urlset of /ok, 256 MiB of empty elements (five times the cap), then /leaked: a few
    hundred KiB on the wire."""
    packer = zlib.compressobj(9, wbits=31)
    filler = b"<x/>" * (MiB // 4)
    return (
        packer.compress(URLSET + f"<url><loc>{base}/ok</loc></url>".encode())
        + b"".join(packer.compress(filler) for _ in range(256))
        + packer.compress(f"<url><loc>{base}/leaked</loc></url></urlset>".encode())
        + packer.flush()
    )


async def test_a_gzip_bomb_is_read_up_to_the_byte_cap(backend: dict[str, Any]) -> None:
    async def sitemap(site: HostileSite, request: web.Request) -> web.Response:
        return web.Response(body=gzip_bomb(site.base), content_type="application/gzip")

    site = pages_site(sitemap)
    async with site.serve():
        gzip_bomb(site.base)  # made before the watch: it takes the test's loop a second or two
        with memory_stays_under(400 * MiB):
            job = await crawl(backend, site)

    assert site.hits["/sitemap.xml"] == 1
    assert site.hits["/ok"] == 1  # listed before the cap
    assert site.hits["/leaked"] == 0  # listed after it
    assert job["result_count"] == 2


@functools.cache
def million_urls(base: str) -> bytes:
    urls = "".join(f"<url><loc>{base}/u/{i}</loc></url>" for i in range(1_000_000))
    return (URLSET.decode() + urls + "</urlset>").encode()


async def test_a_million_urls_are_cut_at_the_cap_per_sitemap(backend: dict[str, Any]) -> None:
    async def million(site: HostileSite, _request: web.Request) -> web.Response:
        return web.Response(body=million_urls(site.base), content_type="application/xml")

    site = pages_site(million)
    async with site.serve():
        million_urls(site.base)  # made before the watch: it takes the test's loop a while
        # Beyond max_depth, every URL admitted is recorded as skipped: the count is exact.
        job = await crawl(backend, site, max_depth=0)

    assert job["progress"]["skipped_urls"] == SitemapLimits().max_urls_per_sitemap
    assert not any(p.startswith("/u/") for _, p in site.requests)


async def test_an_index_that_lists_itself_is_read_once(backend: dict[str, Any]) -> None:
    async def sitemap(site: HostileSite, request: web.Request) -> web.Response:
        body = (
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{site.base}/sitemap.xml</loc></sitemap>"
            f"<sitemap><loc>{site.base}/sitemap.xml?again=1</loc></sitemap>"
            f"<sitemap><loc>{site.base}/child.xml</loc></sitemap></sitemapindex>"
        )
        return web.Response(body=body.encode(), content_type="application/xml")

    site = pages_site(sitemap)
    async with site.serve():
        site.pages["/child.xml"] = plain_urlset(site)
        job = await crawl(backend, site)

    assert site.hits["/sitemap.xml"] == 1
    assert site.hits["/child.xml"] == 1
    assert site.hits["/ok"] == 1
    assert job["result_count"] == 2


def plain_urlset(site: LocalSite) -> Page:
    return Page(body=URLSET + f"<url><loc>{site.base}/ok</loc></url></urlset>".encode(), content_type="text/xml")


async def test_a_slow_endless_sitemap_is_given_up_and_what_came_is_kept(backend: dict[str, Any]) -> None:
    stop = asyncio.Event()

    async def sitemap(site: HostileSite, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/xml"})
        await response.prepare(request)
        await response.write(URLSET + f"<url><loc>{site.base}/ok</loc></url>".encode())
        while not stop.is_set():
            await response.write(b"<!-- more -->")
            await asyncio.sleep(0.05)
        return response

    site = pages_site(sitemap)
    async with site.serve():
        try:
            job = await crawl(backend, site)
        finally:
            stop.set()

    assert site.hits["/ok"] == 1
    assert job["result_count"] == 2
