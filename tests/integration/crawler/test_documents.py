"""Documents: one per (source, URL), updated by later crawls; search; corpus_summary; reindex;
and source credentials that stay with their host."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from quaero.v1 import crawler_service_pb2, source_pb2
from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    job_documents,
    run_step,
    running_crawler,
    source,
    step_call,
)
from tests.support.site import LocalSite, Page, html_page, serve_site


async def crawl_docs(c, base: str) -> str:  # type: ignore[no-untyped-def]
    events = await run_step(c.stub, step_call({"max_depth": 1}, sources=[source("docs", base + "/")]))
    assert events[-1].finished.ok, events[-1].finished.error
    return accepted_ids(events)[0]


async def list_documents(c, **filters: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    response = await c.stub.ListDocuments(crawler_service_pb2.ListDocumentsRequest(limit=500, **filters))
    return list(response.documents)


async def test_a_later_crawl_updates_the_same_documents(backend: dict[str, Any]) -> None:
    async with serve_site() as site, running_crawler(crawler_settings(backend)) as c:
        first = await crawl_docs(c, site.base)
        before = {d.url: d for d in await list_documents(c, source_id="docs")}
        site.pages["/about.html"] = Page(body=html_page("About us now", ["/"]))
        second = await crawl_docs(c, site.base)
        after = {d.url: d for d in await list_documents(c, source_id="docs")}

        assert sorted(await job_documents(c.stub, first)) == sorted(await job_documents(c.stub, second))
        assert {u: d.id for u, d in after.items()} == {u: d.id for u, d in before.items()}
        about, home = site.url("/about.html"), site.url("/")
        assert after[about].title == "About us now"
        assert after[about].metadata["content_hash"] != before[about].metadata["content_hash"]
        assert after[about].updated_at.ToDatetime() > before[about].updated_at.ToDatetime()
        assert after[home].updated_at == before[home].updated_at  # unchanged content
        # An unchanged document is not rewritten: its job is the one that stored it as it is.
        assert (after[home].job_id, after[about].job_id) == (first, second)


async def test_search_finds_pages_with_a_snippet_and_get_returns_markdown(backend: dict[str, Any]) -> None:
    async with serve_site() as site, running_crawler(crawler_settings(backend)) as c:
        job_id = await crawl_docs(c, site.base)

        hits = await c.stub.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest(query="moved", job_id=job_id))
        none = await c.stub.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest(query="zebra unicorn"))
        doc = (await c.stub.GetDocument(crawler_service_pb2.GetDocumentRequest(id=hits.documents[0].id))).document
        listed = await list_documents(c, job_id=job_id)

        assert hits.total_count == 1
        assert hits.documents[0].url == site.url("/moved.html")
        assert "moved" in hits.documents[0].snippet.lower()
        assert none.total_count == 0
        assert doc.markdown.startswith("# Moved here")
        assert all(d.markdown == "" for d in listed)


@pytest.mark.parametrize("query", ["", "   ", "\t\n\u3000"], ids=["empty", "spaces", "other-whitespace"])
async def test_a_search_without_words_is_invalid_naming_the_query(backend: dict[str, Any], query: str) -> None:
    async with running_crawler(crawler_settings(backend)) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stub.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest(query=query))

        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "query" in (err.value.details() or "")


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ('"', 0),
        ('""', 0),
        ("*", 0),
        ("()", 0),
        ("-", 0),
        ("NEAR(", 0),
        ("^ : +", 0),
        ("AND OR NOT", 0),
        ('"pelicans"', 1),
        ("pelicans*", 1),
        ("(pelicans)", 1),
        ('pelicans "', 1),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else str(v),
)
async def test_search_syntax_characters_are_words_not_syntax_on_both_databases(
    backend: dict[str, Any], query: str, found: int
) -> None:
    site = LocalSite()
    site.add("/", "Birds", body="Brown pelicans dive for fish")
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl_docs(c, site.base)

        hits = await c.stub.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest(query=query))

        assert hits.total_count == found
        assert len(hits.documents) == found


async def test_corpus_summary_is_idempotent_and_reindex_counts_documents(backend: dict[str, Any]) -> None:
    async with serve_site() as site, running_crawler(crawler_settings(backend)) as c:
        await crawl_docs(c, site.base)
        stored = len(await list_documents(c, source_id="docs"))

        summaries = [
            (await run_step(c.stub, step_call({"source_id": "docs"}, action="corpus_summary")))[-1].finished
            for _ in range(2)
        ]
        reindexed = (await run_step(c.stub, step_call({}, action="reindex")))[-1].finished
        dry = (await run_step(c.stub, step_call({"dry_run": True}, action="reindex")))[-1].finished
        summary_id = summaries[0].result["document_id"]
        doc = (await c.stub.GetDocument(crawler_service_pb2.GetDocumentRequest(id=summary_id))).document
        jobs = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest())

        assert all(s.ok for s in summaries) and summaries[1].result["document_id"] == summary_id
        assert f"Documents: {stored}" in doc.markdown
        assert reindexed.ok and reindexed.result["documents"] == stored + 1
        assert dry.ok and dry.result["dry_run"] is True
        assert jobs.total_count == 1  # maintenance actions create no crawl jobs


async def test_credentials_are_sent_only_to_the_source_host_and_never_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    site = LocalSite()
    async with site.serve():
        port = site.base.rsplit(":", 1)[1]
        site.pages.update(
            {
                "/": Page(body=html_page("Home", ["/inside.html", "/elsewhere"])),
                "/inside.html": Page(body=html_page("Inside", [])),
                # A redirect to another host name (the same server): the credentials stay behind.
                "/elsewhere": Page(status=302, headers={"Location": f"http://localhost:{port}/landing.html"}),
                "/landing.html": Page(body=html_page("Landing", [])),
            }
        )
        secret = source(
            "private",
            site.base + "/",
            auth=source_pb2.SourceAuth(headers={"X-Token": "s3cret-token"}, cookies={"session": "s3cret-cookie"}),
        )
        settings = crawler_settings({"database_url": None, "data_dir": tmp_path})
        async with running_crawler(settings) as c:
            events = await run_step(
                c.stub, step_call({"max_depth": 1, "allowed_domains": ["localhost"]}, sources=[secret])
            )
            (job_id,) = accepted_ids(events)
            job = await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))
            jobs = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest())
            logs = await c.stub.ListJobLogs(crawler_service_pb2.ListJobLogsRequest(job_id=job_id, limit=500))

        assert events[-1].finished.ok
        by_host = {(host.split(":")[0], path): headers for host, path, headers in site.seen}
        assert by_host[("127.0.0.1", "/inside.html")]["X-Token"] == "s3cret-token"
        assert "session=s3cret-cookie" in by_host[("127.0.0.1", "/inside.html")]["Cookie"]
        landing = by_host[("localhost", "/landing.html")]
        assert "X-Token" not in landing and "Cookie" not in landing
        shown = [json_format.MessageToJson(m) for m in (job, jobs, logs, *events)]
        assert not any("s3cret" in text for text in shown)


async def test_search_snippets_are_plain_text_with_the_matches_marked(backend: dict[str, Any]) -> None:
    """A match inside a table and a link list: the snippet shows the words, not the Markdown."""
    site = LocalSite()
    table = (
        "<table><tr><th>Bird</th><th>Habitat</th></tr><tr><td>pelican</td><td>coast</td></tr>"
        "<tr><td>flamingo</td><td>lagoon</td></tr></table>"
        '<p>See <a href="/next">the next pelican page</a> and <a href="/prev">the previous pelican page</a>.</p>'
    )
    site.pages["/"] = Page(
        body=f'<!doctype html><html lang="en"><head><title>Birds</title></head><body><main><h1>Birds</h1>'
        f"<h2>Where pelican lives</h2>{table}</main></body></html>".encode()
    )
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl_docs(c, site.url(""))
        hits = await c.stub.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest(query="pelican"))

    (hit,) = hits.documents
    assert "](" not in hit.snippet and "|" not in hit.snippet and "#" not in hit.snippet
    assert "**pelican**" in hit.snippet.lower()
