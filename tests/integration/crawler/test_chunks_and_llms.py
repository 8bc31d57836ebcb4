"""Chunks, search heading paths and llms.txt of crawled documents, on both databases."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from quaero.v1 import crawler_service_pb2 as cr
from tests.support.crawler import accepted_ids, crawler_settings, run_step, running_crawler, source, step_call
from tests.support.site import LocalSite, Page


def article(title: str, description: str, sections: str, links: tuple[str, ...] = ()) -> Page:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return Page(
        body=(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="description" content="{description}"></head>'
            f"<body><main><h1>{title}</h1>{sections}<p>{anchors}</p></main></body></html>"
        ).encode()
    )


def bird_site() -> LocalSite:
    site = LocalSite()
    links = ("/about.html", "/guide/herons.html", "/guide/pelicans.html", "/gone.html")
    site.pages["/"] = article("Birds home", "Everything about birds", "<p>Welcome to the birds.</p>", links)
    site.pages["/about.html"] = article("About birds", "", "<p>Who writes this.</p>")
    site.pages["/guide/herons.html"] = article(
        "Herons",
        "Grey herons",
        "<p>Herons are tall.</p><h2>Feeding</h2><p>Grey herons wait in the shallows for fish.</p>"
        "<h3>At night</h3><p>Some herons hunt by moonlight.</p><h2>Nesting</h2><p>They nest in colonies.</p>",
    )
    site.pages["/guide/pelicans.html"] = article(
        "Pelicans", "Brown pelicans", "<h2>Diving</h2><p>Brown pelicans dive for fish.</p>"
    )
    site.pages["/gone.html"] = article("Gone", "", "<p>Soon removed.</p>")
    return site


async def crawl(c: Any, base: str) -> str:
    events = await run_step(c.stub, step_call({"max_depth": 1}, sources=[source("birds", base + "/")]))
    assert events[-1].finished.ok, events[-1].finished.error
    return accepted_ids(events)[0]


async def document(c: Any, url: str) -> Any:
    docs = await c.stub.ListDocuments(cr.ListDocumentsRequest(source_id="birds", limit=100))
    return next(d for d in docs.documents if d.url == url)


async def llms(c: Any, format: int, name: str = "Birds") -> str:
    request = cr.GetSourceLlmsTxtRequest(source_id="birds", format=format, name=name)  # type: ignore[arg-type]
    return "".join([piece.text async for piece in c.stub.GetSourceLlmsTxt(request)])


async def test_a_document_lists_its_chunks_with_heading_paths(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl(c, site.base)
        herons = await document(c, site.url("/guide/herons.html"))

        got = await c.stub.ListDocumentChunks(cr.ListDocumentChunksRequest(document_id=herons.id))
        page = await c.stub.ListDocumentChunks(cr.ListDocumentChunksRequest(document_id=herons.id, limit=1, offset=1))

        assert [(list(ch.heading_path), ch.text) for ch in got.chunks] == [
            (["Herons"], "# Herons\n\nHerons are tall."),
            (["Herons", "Feeding"], "## Feeding\n\nGrey herons wait in the shallows for fish."),
            (["Herons", "Feeding", "At night"], "### At night\n\nSome herons hunt by moonlight."),
            (["Herons", "Nesting"], "## Nesting\n\nThey nest in colonies."),
        ]
        assert all(ch.tokens == (len(ch.text) + 3) // 4 for ch in got.chunks)
        assert got.total_count == 4 and len({ch.id for ch in got.chunks}) == 4
        assert [ch.id for ch in page.chunks] == [got.chunks[1].id] and page.total_count == 4


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"document_id": ""}, "document_id"), ({"document_id": "x", "max_tokens": 8}, "max_tokens")],
    ids=["no-document", "tiny-max-tokens"],
)
async def test_chunks_of_a_bad_request_are_invalid_naming_the_field(
    backend: dict[str, Any], request_fields: dict[str, Any], field: str
) -> None:
    async with running_crawler(crawler_settings(backend)) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stub.ListDocumentChunks(cr.ListDocumentChunksRequest(**request_fields))

        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (err.value.details() or "")


async def test_a_search_answer_carries_the_best_matching_chunks_heading_path(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl(c, site.base)

        night = await c.stub.SearchDocuments(cr.SearchDocumentsRequest(query="moonlight"))
        shallows = await c.stub.SearchDocuments(cr.SearchDocumentsRequest(query="shallows"))

        assert [list(d.heading_path) for d in night.documents] == [["Herons", "Feeding", "At night"]]
        assert [list(d.heading_path) for d in shallows.documents] == [["Herons", "Feeding"]]


async def test_llms_txt_lists_the_current_documents_by_section(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl(c, site.base)
        del site.pages["/gone.html"]
        await crawl(c, site.base)  # finds /gone.html 404: removed

        text = await llms(c, cr.LLMS_TXT_FORMAT_INDEX)

        host = site.base.removeprefix("http://")
        assert text == (
            "# Birds\n\n"
            f"> 4 documents crawled from {host}.\n"
            "\n## Pages\n\n"
            f"- [Birds home]({site.url('/')}): Everything about birds\n"
            f"- [About birds]({site.url('/about.html')})\n"
            "\n## Guide\n\n"
            f"- [Herons]({site.url('/guide/herons.html')}): Grey herons\n"
            f"- [Pelicans]({site.url('/guide/pelicans.html')}): Brown pelicans\n"
        )


async def test_llms_full_txt_holds_every_current_documents_markdown(backend: dict[str, Any]) -> None:
    site = bird_site()
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        await crawl(c, site.base)
        del site.pages["/gone.html"]
        await crawl(c, site.base)

        text = await llms(c, cr.LLMS_TXT_FORMAT_FULL, name="")
        paths = ["/", "/about.html", "/guide/herons.html", "/guide/pelicans.html"]
        docs = [
            (await c.stub.GetDocument(cr.GetDocumentRequest(id=(await document(c, site.url(p))).id))).document
            for p in paths
        ]

        host = site.base.removeprefix("http://")
        assert text == f"# birds\n\n> 4 documents crawled from {host}.\n" + "".join(
            f"\n# {d.title}\n\nSource: {d.url}\n\n{d.markdown.strip()}\n" for d in docs
        )
        assert docs[2].markdown.startswith("# Herons\n\nHerons are tall.\n\n## Feeding")
        assert "Soon removed" not in text
