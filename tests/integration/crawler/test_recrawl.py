"""Recrawls fetch and store only what changed, and say what changed.

One definition executed twice against a local site that the test changes in between: pages
served with an ETag, with only Last-Modified and with neither; a page edited under each kind;
one that answers 404, one no longer linked, one added. Every label is exact, the 304s are
counted, unchanged documents are not rewritten, removed ones leave lists and search, and the
second crawl's documents are the first's plus and minus the changes.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from libs.amqp import QueueSpec, RabbitQueue
from libs.db import Database
from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.lookups import Lookups
from services.crawler.parse import ParsedPage, parse_page
from services.crawler.settings import CrawlerSettings
from tests.support.crawl_workers import worker_processes
from tests.support.crawler import accepted_ids, crawler_settings, run_step, running_crawler, source, step_call
from tests.support.runs import define, execute, jobs, wait_for
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite, Page, html_page

SOURCE = "adhoc:docs"
# Kept, with validators of each kind; edited (with an ETag, and without validators); 404 on the
# second crawl; unlinked on the second crawl.
FIRST = ["/etag", "/modified", "/plain", "/edited-etag", "/edited-plain", "/gone", "/unlinked"]
SECOND = ["/etag", "/modified", "/plain", "/edited-etag", "/edited-plain", "/gone", "/added"]


def page(title: str, words: str, **validators: str) -> Page:
    return Page(body=html_page(title, ["/"], words), **validators)


def first_version(site: LocalSite) -> None:
    site.pages.update(
        {
            "/": Page(body=html_page("Home", FIRST)),
            "/etag": page("ETag", "served with an entity tag", etag='"e1"'),
            "/modified": page("Modified", "served with a date", last_modified="Tue, 01 Dec 2026 10:00:00 GMT"),
            "/plain": page("Plain", "served with nothing to revalidate"),
            "/edited-etag": page("Edited", "the first words of an edited page", etag='"x1"'),
            "/edited-plain": page("Edited plain", "the first words of a plain page"),
            "/gone": page("Gone", "zanzibar is the word of a page that goes away"),
            "/unlinked": page("Unlinked", "a page nothing will link to"),
        }
    )


def second_version(site: LocalSite) -> None:
    site.pages["/"] = Page(body=html_page("Home", SECOND))
    site.pages["/edited-etag"] = page("Edited", "the second words of an edited page", etag='"x2"')
    site.pages["/edited-plain"] = page("Edited plain", "the second words of a plain page")
    site.pages["/gone"] = Page(status=404, body=b"not here", content_type="text/plain")
    site.pages["/added"] = page("Added", "a page the second crawl finds")


async def crawl(stack: Stack) -> dict[str, Any]:
    started = await execute(stack, "docs")
    execution = await wait_for(stack, started["execution_id"], timeout=90)
    assert execution["status"] == "completed", execution
    (job,) = await jobs(stack, execution_id=started["execution_id"])
    return job


async def documents(stack: Stack, **request: Any) -> dict[str, Any]:
    listed = await stack.crawler.ListDocuments(
        crawler_service_pb2.ListDocumentsRequest(source_id=SOURCE, limit=500, **request)
    )
    return {d.url: d for d in listed.documents}


async def changes(stack: Stack, job_id: str) -> dict[str, str]:
    urls = await stack.crawler.ListCrawlUrls(crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id, limit=500))
    return {
        u.url: crawl_job_pb2.DocumentChangeKind.Name(u.change).removeprefix("DOCUMENT_CHANGE_KIND_").lower()
        for u in urls.urls
        if u.change
    }


async def rows(url: str, table: str, where: str = "") -> list[Any]:
    db = Database(url, "crawler", pool_size=1)
    await db.start()
    try:
        async with db.read() as session:
            return list(await session.execute(text(f"SELECT * FROM {table} {where}")))
    finally:
        await db.close()


async def recrawl(stack: Stack, site: LocalSite, crawler_db: str) -> None:
    step = {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], "max_depth": 1}}
    await define(stack, {"id": "docs", "steps": [step]})
    first = await crawl(stack)
    before = await documents(stack)
    stored_before = {r.url: r for r in await rows(crawler_db, "documents")}
    postgres = crawler_db.startswith("postgresql")
    xmin_before = {}
    if postgres:
        xmin_before = {r[0]: r[1] for r in await rows(crawler_db, "(SELECT url, xmin::text FROM documents) d")}
    second_version(site)
    second = await crawl(stack)
    after = await documents(stack)
    stored_after = {r.url: r for r in await rows(crawler_db, "documents")}

    url = site.url
    assert first["changes"] == {"new": 8, "changed": 0, "unchanged": 0, "removed": 0}
    assert second["changes"] == {"new": 1, "changed": 3, "unchanged": 3, "removed": 2}
    assert await changes(stack, second["id"]) == {
        url("/"): "changed",
        url("/etag"): "unchanged",
        url("/modified"): "unchanged",
        url("/plain"): "unchanged",
        url("/edited-etag"): "changed",
        url("/edited-plain"): "changed",
        url("/gone"): "removed",
        url("/added"): "new",
    }
    # Validators were sent back and the two pages that have them answered 304, once each.
    assert dict(site.not_modified) == {"/etag": 1, "/modified": 1}
    # The second crawl's documents are the first's, plus the new one, minus the removed ones.
    assert set(after) == (set(before) | {url("/added")}) - {url("/gone"), url("/unlinked")}
    # Unchanged documents were not rewritten: same version, same times, same row version.
    for path in ("/etag", "/modified", "/plain"):
        was, now = stored_before[url(path)], stored_after[url(path)]
        assert (now.version, now.updated_at, now.job_id) == (was.version, was.updated_at, was.job_id)
    if postgres:
        xmin_after = {r[0]: r[1] for r in await rows(crawler_db, "(SELECT url, xmin::text FROM documents) d")}
        for path in ("/etag", "/modified", "/plain"):
            assert xmin_after[url(path)] == xmin_before[url(path)]
    # Changed documents are a version further, the one they replaced kept.
    assert stored_after[url("/edited-etag")].version == 2
    kept = await rows(crawler_db, "document_versions")
    assert sorted((r.document_id, r.version) for r in kept) == sorted(
        (stored_after[url(p)].id, 1) for p in ("/", "/edited-etag", "/edited-plain")
    )
    # Removed documents leave lists and search, unless asked for.
    removed = await documents(stack, include_removed=True)
    assert {url("/gone"), url("/unlinked")} <= set(removed)
    assert removed[url("/gone")].HasField("removed_at")
    search = crawler_service_pb2.SearchDocumentsRequest(query="zanzibar", source_id=SOURCE)
    assert (await stack.crawler.SearchDocuments(search)).total_count == 0
    search.include_removed = True
    assert (await stack.crawler.SearchDocuments(search)).total_count == 1


async def test_a_recrawl_labels_every_change_and_rewrites_only_what_changed(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    site = LocalSite()
    first_version(site)
    async with site.serve(), running_stack(backend) as stack:
        await recrawl(stack, site, CrawlerSettings(**backend).database_url_for("crawler"))


async def test_a_recrawl_labels_every_change_with_two_worker_processes(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """The production topology: PostgreSQL, RabbitMQ and two worker processes."""
    common = {**common_settings(pg_url, tmp_path / "data", amqp_url), "queue_name": f"quaero.test.{uuid.uuid4().hex}"}
    settings = CrawlerSettings(**common)
    site = LocalSite()
    first_version(site)
    try:
        async with site.serve(), running_stack(common) as stack, worker_processes(settings, 2, tmp_path):
            await recrawl(stack, site, settings.database_url_for("crawler"))
    finally:
        queue = await RabbitQueue.connect(amqp_url, QueueSpec(settings.queue_name, settings.delivery_limit))
        try:
            await queue.delete()
        finally:
            await queue.close()


async def test_a_304_to_a_request_that_was_not_conditional_fails_the_url(backend: dict[str, Any]) -> None:
    """A broken server answering 304 to a first crawl: the URL fails saying so (it is neither a
    redirect nor a page)."""
    site = LocalSite()
    site.add("/", "Home", ["/broken"])
    site.pages["/broken"] = Page(status=304, body=b"", content_type="text/html")
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        events = await run_step(c.stub, step_call({"max_depth": 1}, sources=[source("s", site.url("/"))]))
        (job_id,) = accepted_ids(events)
        urls = await c.stub.ListCrawlUrls(crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id))

    (broken,) = [u for u in urls.urls if u.url == site.url("/broken")]
    assert (broken.state, broken.reason, broken.http_status) == (
        crawl_job_pb2.CRAWL_URL_STATE_FAILED,
        "http_status",
        304,
    )


async def test_a_recrawl_looks_nothing_up_per_url_and_parses_only_new_bodies(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recrawl's tasks carry their pages' stored documents (read by the statement that leased
    them), so its worker reads no document before or after a fetch; a page served again with the
    very body (and charset) it was parsed from is unchanged without a parse, a 304 likewise, and
    only a body that differs is parsed: an edited page, and the same bytes in another charset."""
    site = LocalSite()
    paths = ["/etag", "/plain", "/charset", "/edited"]
    site.pages.update(
        {
            "/": Page(body=html_page("Home", paths)),
            "/etag": page("ETag", "served with an entity tag", etag='"e1"'),
            "/plain": page("Plain", "served with nothing to revalidate"),
            "/charset": page("Charset", "the same bytes in another charset"),
            "/edited": page("Edited", "the first words"),
        }
    )
    looked_up: list[str] = []
    for name in ("stored", "links"):
        real = getattr(Lookups, name)

        async def counted(self: Lookups, *args: Any, _real: Any = real, _name: str = name) -> Any:
            looked_up.append(_name)
            return await _real(self, *args)

        monkeypatch.setattr(Lookups, name, counted)
    parsed: list[str] = []

    async def parse(url: str, body: bytes, charset: str | None) -> ParsedPage:
        parsed.append(url.removeprefix(site.url("")))
        return parse_page(url, body, charset)

    call = lambda: step_call({"max_depth": 1}, sources=[source("s", site.url("/"))])  # noqa: E731
    async with site.serve(), running_crawler(crawler_settings(backend), worker_hooks={"parse": parse}) as c:
        first = accepted_ids(await run_step(c.stub, call()))
        assert sorted(parsed) == sorted(["/", *paths])
        parsed.clear()
        site.pages["/charset"] = replace(site.pages["/charset"], content_type="text/html; charset=iso-8859-1")
        site.pages["/edited"] = page("Edited", "the second words")
        (job_id,) = accepted_ids(await run_step(c.stub, call()))
        urls = await c.stub.ListCrawlUrls(crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id))

    assert len(first) == 1
    labels = {
        u.url.removeprefix(site.url("")): crawl_job_pb2.DocumentChangeKind.Name(u.change).removeprefix(
            "DOCUMENT_CHANGE_KIND_"
        )
        for u in urls.urls
        if u.change
    }
    assert labels == {"/": "UNCHANGED", "/etag": "UNCHANGED", "/plain": "UNCHANGED", "/charset": "UNCHANGED",
                      "/edited": "CHANGED"}  # fmt: skip
    assert dict(site.not_modified) == {"/etag": 1}
    assert sorted(parsed) == ["/charset", "/edited"]
    assert looked_up == []
