"""A site's template, seen across its pages, leaves its documents when the crawl completes: with
the embedded worker (SQLite and PostgreSQL) and with two worker processes sharing the crawl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.settings import CrawlerSettings
from tests.support.crawl_workers import worker_processes
from tests.support.crawler import (
    Crawler,
    accepted_ids,
    crawler_settings,
    run_step,
    running_crawler,
    source,
    step_call,
)
from tests.support.site import LocalSite, Page

# A block no selector catches: a plain div, no telling class, inside the page's main element.
PITCH = "Call Roofers United at 555-0100 today for a free quote on your new roof."
PAGES = 6


def template_site() -> LocalSite:
    site = LocalSite()
    leaves = [f"/roofs/{i}.html" for i in range(PAGES)]
    for i, path in enumerate(["/", *leaves]):
        links = "".join(f'<a href="{leaf}">Roof {n}</a> ' for n, leaf in enumerate(leaves))
        own = (
            f"Roof number {i} is made of slate quarried in valley {i}; it weighs {i + 3} tonnes and has kept "
            f"a farmhouse dry for {i + 40} winters without a single leak."
        )
        body = (
            f"<!doctype html><html><head><title>Roof {i}</title></head><body>"
            f"<main><h1>Roof {i}</h1><p>{own}</p><div><p>{PITCH}</p></div>"
            f"{'<p>Only this page says the word zeppelin.</p>' if i == 2 else ''}</main>"
            f"<p>{links}</p></body></html>"
        )
        site.pages[path] = Page(body=body.encode())
    return site


async def crawled_markdown(c: Crawler, site: LocalSite) -> dict[str, str]:
    config = crawl_job_pb2.CrawlConfig(max_depth=2, concurrency=4)
    events = await run_step(c.stub, step_call({}, sources=[source("roofs", site.url("/"), crawl=config)]))
    assert events[-1].finished.ok, events[-1].finished.error
    (job_id,) = accepted_ids(events)
    listed = await c.stub.ListDocuments(crawler_service_pb2.ListDocumentsRequest(job_id=job_id, limit=100))
    out = {}
    for doc in listed.documents:
        full = await c.stub.GetDocument(crawler_service_pb2.GetDocumentRequest(id=doc.id))
        out[full.document.url] = full.document.markdown
    return out


def assert_template_dropped(markdown: dict[str, str]) -> None:
    assert len(markdown) == PAGES + 1
    for url, text in markdown.items():
        assert PITCH not in text, url
        assert "made of slate" in text, url  # the page's own content stays
    assert sum("zeppelin" in text for text in markdown.values()) == 1  # a block on one page is the page's


async def test_embedded_crawl_drops_the_site_template(backend: dict[str, Any]) -> None:
    site = template_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        assert_template_dropped(await crawled_markdown(c, site))

        # A recrawl that stores the pages again (the site unchanged) drops it again, and the
        # page-level block counts stay whole for pages it does not touch.
        assert_template_dropped(await crawled_markdown(c, site))


async def test_two_worker_processes_drop_the_site_template(shared: CrawlerSettings, tmp_path: Path) -> None:
    site = template_site()
    async with (
        site.serve(),
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path) as workers,
    ):
        markdown = await crawled_markdown(c, site)
        assert markdown, [w.output() for w in workers]
        assert_template_dropped(markdown)
