"""Sitemaps: URLs a site lists only in its sitemaps are crawled (include), ignored (skip), or
crawled alone (only), under every scope rule; on embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from typing import Any

import pytest

from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    frontier,
    job_documents,
    run_step,
    running_crawler,
    step_call,
)
from tests.support.site import LocalSite, Page


def urlset(urls: Sequence[str]) -> bytes:
    body = "".join(f"<url><loc>{u}</loc><changefreq>daily</changefreq></url>" for u in urls)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}'
        "</urlset>"
    ).encode()


def sitemap_index(urls: Sequence[str]) -> bytes:
    body = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</sitemapindex>'
    ).encode()


def xml(body: bytes) -> Page:
    return Page(body=body, content_type="application/xml")


def gz(body: bytes) -> Page:
    return Page(body=gzip.compress(body), content_type="application/gzip")


def sitemap_site() -> LocalSite:
    """The home page links one page; every other page is listed only in a sitemap: robots.txt
    names an index (on another path) of two gzip sitemaps, and /sitemap.xml lists one more."""
    site = LocalSite()
    site.add("/", "Home", ["/linked"])
    site.add("/linked", "Linked")
    site.add("/from-a-1", "From A 1", ["/only-linked"])
    for path in ("/from-a-2", "/from-b", "/from-root", "/only-linked", "/private/secret", "/excluded/page"):
        site.add(path, path)
    return site


def publish_sitemaps(site: LocalSite) -> None:
    base = site.base
    site.robots_txt = f"User-agent: *\nDisallow: /private/\n\nSitemap: {base}/maps/index.xml\n"
    site.pages["/maps/index.xml"] = xml(sitemap_index([f"{base}/maps/a.xml.gz", f"{base}/maps/b.xml.gz"]))
    site.pages["/maps/a.xml.gz"] = gz(
        urlset(
            [
                f"{base}/from-a-1",
                f"{base}/from-a-2",
                f"{base}/private/secret",  # robots.txt disallows it
                f"{base}/excluded/page",  # the step's exclude pattern
                "http://offsite.invalid/page",  # another host
            ]
        )
    )
    site.pages["/maps/b.xml.gz"] = gz(urlset([f"{base}/from-b"]))
    site.pages["/sitemap.xml"] = xml(urlset([f"{base}/from-root", f"{base}/linked"]))


CONFIG = {"max_depth": 2, "exclude_patterns": ["/excluded/"]}
LISTED = {"/from-a-1", "/from-a-2", "/from-b", "/from-root"}


async def crawl(backend: dict[str, Any], site: LocalSite, **config: Any) -> tuple[set[str], dict[str, Any]]:
    async with running_crawler(crawler_settings(backend)) as c:
        events = await run_step(c.stub, step_call({**CONFIG, **config, "start_urls": [site.url("/")]}))
        assert events[-1].finished.ok, events[-1].finished.error
        (job_id,) = accepted_ids(events)
        docs = await job_documents(c.stub, job_id)
        urls = await frontier(c.stub, job_id)
    return {d.removeprefix(site.base) for d in docs}, {u.removeprefix(site.base): s for u, s in urls.items()}


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        (None, {"/", "/linked", "/only-linked"} | LISTED),
        ("include", {"/", "/linked", "/only-linked"} | LISTED),
        ("skip", {"/", "/linked"}),
        ("only", {"/"} | LISTED | {"/linked"}),
    ],
    ids=["default", "include", "skip", "only"],
)
async def test_sitemap_mode_decides_exactly_which_pages_are_stored(
    backend: dict[str, Any], mode: str | None, stored: set[str]
) -> None:
    site = sitemap_site()
    async with site.serve():
        publish_sitemaps(site)
        docs, _ = await crawl(backend, site, **({"sitemap": mode} if mode else {}))

    assert docs == stored
    fetched = {p for _, p in site.requests}
    if mode == "skip":
        assert not fetched & {"/sitemap.xml", "/maps/index.xml"}
    else:
        assert {"/sitemap.xml", "/maps/index.xml", "/maps/a.xml.gz", "/maps/b.xml.gz"} <= fetched


async def test_sitemap_urls_pass_every_scope_rule(backend: dict[str, Any]) -> None:
    site = sitemap_site()
    async with site.serve():
        publish_sitemaps(site)
        _, urls = await crawl(backend, site)

    assert urls["/private/secret"] == ("skipped", "robots")
    assert urls["/excluded/page"] == ("skipped", "pattern")
    assert urls["http://offsite.invalid/page"] == ("skipped", "offsite")
    assert site.hits["/private/secret"] == 0 and site.hits["/excluded/page"] == 0


async def test_sitemap_urls_are_at_depth_one_and_count_against_the_budget(backend: dict[str, Any]) -> None:
    site = sitemap_site()
    async with site.serve():
        publish_sitemaps(site)
        shallow, urls = await crawl(backend, site, max_depth=0)
        budget, _ = await crawl(backend, site, max_pages=3, sitemap="only")

    assert shallow == {"/"}
    assert {urls[p] for p in LISTED} == {("skipped", "depth")}
    assert len(budget) == 3
