"""reextract: the current extraction run again on the HTML the workers kept, on both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from libs.db import Database
from quaero.v1 import crawler_service_pb2 as cr
from services.crawler.frontier import url_key
from services.crawler.store import DOCUMENTS, HTML, VERSIONS, decompress
from tests.integration.crawler.test_chunks_and_llms import bird_site, crawl, document
from tests.support.crawler import crawler_database, crawler_settings, run_step, running_crawler, step_call
from tests.support.runs import wait_until

OLD_MARKDOWN = "# Herons\n\nAn older extraction kept the menu. Home | About | Contact\n"


async def html_kept(db: Database, pages: int) -> None:
    """Until the workers have kept `pages` pages' HTML (they write it beside the settles)."""

    async def count() -> bool:
        async with db.read() as session:
            return (await session.execute(select(func.count()).select_from(HTML))).scalar_one() >= pages

    await wait_until(count)


async def reextract(c: Any, **config: Any) -> Any:
    finished = (await run_step(c.stub, step_call(config, action="reextract")))[-1].finished
    assert finished.ok, finished.error
    return finished.result


async def test_the_workers_keep_each_pages_html_compressed(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c, crawler_database(backend) as db:
        await crawl(c, site.base)
        await html_kept(db, 5)
        async with db.read() as session:
            rows = {r.url_key: r for r in await session.execute(select(HTML).where(HTML.c.source_id == "birds"))}

        for path in ("/", "/about.html", "/guide/herons.html", "/guide/pelicans.html", "/gone.html"):
            row = rows[url_key(site.url(path))]
            assert decompress(row.body) == site.pages[path].body
            assert row.size == len(site.pages[path].body) and row.charset == "utf-8"
        assert len(rows) == 5


async def test_reextract_rewrites_a_document_an_older_extraction_stored_and_is_idempotent(
    backend: dict[str, Any],
) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c, crawler_database(backend) as db:
        await crawl(c, site.base)
        await html_kept(db, 5)
        herons = await document(c, site.url("/guide/herons.html"))
        current = (await c.stub.GetDocument(cr.GetDocumentRequest(id=herons.id))).document
        async with db.session() as session:  # as an older release's extraction stored it
            await session.execute(
                update(DOCUMENTS)
                .where(DOCUMENTS.c.id == herons.id)
                .values(markdown=OLD_MARKDOWN, content_hash="0" * 64, title="Herons (old)")
            )
        fetches = len(site.page_requests())

        first = await reextract(c, source_id="birds")
        after = (await c.stub.GetDocument(cr.GetDocumentRequest(id=herons.id))).document
        second = await reextract(c, source_id="birds")
        again = (await c.stub.GetDocument(cr.GetDocumentRequest(id=herons.id))).document
        found = await c.stub.SearchDocuments(cr.SearchDocumentsRequest(query="moonlight"))
        stale = await c.stub.SearchDocuments(cr.SearchDocumentsRequest(query="Contact"))
        async with db.read() as session:
            versions = (await session.execute(select(VERSIONS).where(VERSIONS.c.document_id == herons.id))).all()

        assert dict(first) == {"documents": 5, "changed": 1, "unchanged": 4, "without_html": 0, "dry_run": False}
        assert (after.markdown, after.title, after.version) == (current.markdown, "Herons", 2)
        assert after.metadata["content_hash"] == current.metadata["content_hash"]
        assert [(v.version, v.markdown, v.title) for v in versions] == [(1, OLD_MARKDOWN, "Herons (old)")]
        assert dict(second) == {"documents": 5, "changed": 0, "unchanged": 5, "without_html": 0, "dry_run": False}
        assert (again.version, again.updated_at) == (after.version, after.updated_at)
        assert [d.id for d in found.documents] == [herons.id] and stale.total_count == 0
        assert len(site.page_requests()) == fetches  # nothing refetched


async def test_reextract_counts_documents_without_html_and_a_dry_run_writes_nothing(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c, crawler_database(backend) as db:
        await crawl(c, site.base)
        await html_kept(db, 5)
        herons = await document(c, site.url("/guide/herons.html"))
        async with db.session() as session:
            await session.execute(update(DOCUMENTS).where(DOCUMENTS.c.id == herons.id).values(content_hash="0" * 64))
            await session.execute(delete(HTML).where(HTML.c.url_key == url_key(site.url("/about.html"))))

        dry = await reextract(c, source_id="birds", dry_run=True)
        unchanged = await document(c, site.url("/guide/herons.html"))

        assert dict(dry) == {"documents": 5, "changed": 1, "unchanged": 3, "without_html": 1, "dry_run": True}
        assert unchanged.version == 1 and unchanged.metadata["content_hash"] == herons.metadata["content_hash"]


async def test_with_keep_html_off_no_html_is_kept_and_reextract_leaves_documents_alone(
    backend: dict[str, Any],
) -> None:
    site = bird_site()
    settings = crawler_settings(backend, keep_html=False)
    async with site.serve(), running_crawler(settings) as c, crawler_database(backend) as db:
        await crawl(c, site.base)

        result = await reextract(c)
        async with db.read() as session:
            kept = (await session.execute(select(func.count()).select_from(HTML))).scalar_one()

        assert kept == 0
        assert dict(result) == {"documents": 5, "changed": 0, "unchanged": 0, "without_html": 5, "dry_run": False}


async def test_reextract_keeps_the_site_template_out(backend: dict[str, Any]) -> None:
    """A document that lost its site's template when its crawl completed, reextracted because its
    stored extraction is older: the new extraction leaves the template out too."""
    from tests.integration.crawler.test_site_template import PITCH, crawled_markdown, template_site

    site = template_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c, crawler_database(backend) as db:
        before = await crawled_markdown(c, site)
        assert not any(PITCH in text for text in before.values())
        await html_kept(db, len(before))
        async with db.session() as session:  # every document stored by an older extraction
            await session.execute(update(DOCUMENTS).values(content_hash="0" * 64))
        result = await reextract(c, source_id="roofs")
        assert result["changed"] == len(before)
        after = await crawled_markdown_of(c, "roofs")
    assert after == before


async def crawled_markdown_of(c: Any, source_id: str) -> dict[str, str]:
    listed = await c.stub.ListDocuments(cr.ListDocumentsRequest(source_id=source_id, limit=100))
    out = {}
    for doc in listed.documents:
        full = await c.stub.GetDocument(cr.GetDocumentRequest(id=doc.id))
        out[full.document.url] = full.document.markdown
    return out
