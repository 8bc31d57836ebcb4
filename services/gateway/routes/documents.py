"""Documents: list, full-text search (with snippets), one document with its Markdown, its chunks."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from libs.bounds import MAX_QUERY_LENGTH
from libs.proto_json import to_dict
from quaero.v1 import crawl_job_pb2
from quaero.v1 import crawler_service_pb2 as cr
from services.gateway import examples
from services.gateway.paging import Limit, Offset, OrderDir, page_body
from services.gateway.params import IdFilter, PathId, Storable, id_query
from services.gateway.render import safe_html
from services.gateway.schemas import ERROR_RESPONSES, list_model, model_for

router = APIRouter(prefix="/api/documents", tags=["documents"])

Document = model_for(crawl_job_pb2.Document.DESCRIPTOR, omit=frozenset({"snippet", "heading_path"}))
# List items never carry Markdown; `snippet` is the matching passage when searching, else null;
# `heading_path` the headings over the best-matching chunk when searching, else empty.
DocumentSummary = model_for(
    crawl_job_pb2.Document.DESCRIPTOR,
    omit=frozenset({"markdown"}),
    nullable=frozenset({"snippet"}),
    name="DocumentSummary",
)
DocumentSummaryList = list_model("DocumentList", "documents", DocumentSummary)
DocumentChunk = model_for(crawl_job_pb2.DocumentChunk.DESCRIPTOR)
DocumentChunkList = list_model("DocumentChunkList", "chunks", DocumentChunk)
_ONE_DOCUMENT = frozenset({"snippet", "heading_path"})
DocumentVersion = model_for(crawl_job_pb2.DocumentVersion.DESCRIPTOR, omit=frozenset({"markdown"}))
DocumentVersionList = list_model("DocumentVersionList", "versions", DocumentVersion)
DocumentVersionFull = model_for(crawl_job_pb2.DocumentVersion.DESCRIPTOR, name="DocumentVersionWithMarkdown")
DocumentDiff = model_for(cr.DiffDocumentVersionsResponse.DESCRIPTOR, name="DocumentDiff")


class DocumentHtml(BaseModel):
    html: str


IncludeRemoved = Annotated[bool, Query(description="Documents a crawl found gone (tombstoned, `removed_at` set) too.")]


def document_summary_json(msg: crawl_job_pb2.Document, *, searched: bool = False) -> dict[str, Any]:
    data = to_dict(msg, omit=frozenset({"markdown"}))
    if not searched:
        data["snippet"] = None
    return data


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.crawler


@router.get(
    "",
    response_model=DocumentSummaryList,
    responses={200: examples.ok(examples.page("documents", examples.DOCUMENT_SUMMARY)), **ERROR_RESPONSES},
    summary="List documents, or search them with `q` (best matches first, each with a snippet)",
)
async def list_documents(
    request: Request,
    q: Annotated[
        str | None,
        Query(max_length=MAX_QUERY_LENGTH, description="Full-text query over titles and content."),
        Storable,
    ] = None,
    source_id: IdFilter = None,
    job_id: Annotated[str | None, id_query("Documents this crawl job fetched."), Storable] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[
        Literal["created_at", "updated_at", "title"], Query(description="Ignored with `q` (relevance order).")
    ] = "created_at",
    order_dir: OrderDir = "desc",
    include_removed: IncludeRemoved = False,
) -> JSONResponse:
    query = (q or "").strip()
    if query:
        resp = await _stub(request).SearchDocuments(
            cr.SearchDocumentsRequest(
                query=query,
                source_id=source_id or "",
                job_id=job_id or "",
                limit=limit,
                offset=offset,
                include_removed=include_removed,
            )
        )
    else:
        resp = await _stub(request).ListDocuments(
            cr.ListDocumentsRequest(
                source_id=source_id or "",
                job_id=job_id or "",
                limit=limit,
                offset=offset,
                order_by=order_by,
                order_dir=order_dir,
                include_removed=include_removed,
            )
        )
    items = (document_summary_json(d, searched=bool(query)) for d in resp.documents)
    return JSONResponse(page_body("documents", items, resp))


@router.get(
    "/{id}",
    response_model=Document,
    responses={200: examples.ok(examples.DOCUMENT), **ERROR_RESPONSES},
    summary="Get a document with its Markdown",
)
async def get_document(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetDocument(cr.GetDocumentRequest(id=id))
    return JSONResponse(to_dict(resp.document, omit=_ONE_DOCUMENT))


@router.get(
    "/{id}/chunks",
    response_model=DocumentChunkList,
    responses={200: examples.ok(examples.page("chunks", examples.DOCUMENT_CHUNK)), **ERROR_RESPONSES},
    summary="A document's Markdown split on its headings into chunks with stable ids and token estimates",
    description=(
        "Each chunk is a section (a heading and what follows it, up to the next heading) or, for a "
        "section longer than `max_tokens`, a run of its paragraphs; a code block is never split. A "
        "chunk's id is made of the document's URL, its heading path and its position among sections "
        "with the same path: it stays the same when other sections change. Computed from the stored "
        "Markdown, in document order."
    ),
)
async def list_document_chunks(
    request: Request,
    id: PathId,
    limit: Limit = 50,
    offset: Offset = 0,
    max_tokens: Annotated[
        int, Query(ge=32, le=8192, description="Sections longer than this (estimated tokens) are split.")
    ] = 512,
) -> JSONResponse:
    resp = await _stub(request).ListDocumentChunks(
        cr.ListDocumentChunksRequest(document_id=id, limit=limit, offset=offset, max_tokens=max_tokens)
    )
    return JSONResponse(page_body("chunks", (to_dict(c) for c in resp.chunks), resp))


@router.get(
    "/{id}/versions",
    response_model=DocumentVersionList,
    responses={200: examples.ok(examples.page("versions", examples.DOCUMENT_VERSION)), **ERROR_RESPONSES},
    summary="A document's versions, newest first: the current one and those kept before it",
    description="Each change a recrawl found is a version more; the earlier ones are kept up to "
    "`QUAERO_DOCUMENT_VERSIONS`, oldest dropped first. Without Markdown.",
)
async def document_versions(request: Request, id: PathId, limit: Limit = 50, offset: Offset = 0) -> JSONResponse:
    resp = await _stub(request).ListDocumentVersions(
        cr.ListDocumentVersionsRequest(document_id=id, limit=limit, offset=offset)
    )
    items = (to_dict(v, omit=frozenset({"markdown"})) for v in resp.versions)
    return JSONResponse(page_body("versions", items, resp))


@router.get(
    "/{id}/versions/{version}",
    response_model=DocumentVersionFull,
    responses={200: examples.ok(examples.DOCUMENT_VERSION_FULL), **ERROR_RESPONSES},
    summary="One version of a document, with its Markdown",
    description="400 naming `version` when it is below 1 or above the current version; 404 when it is no longer kept.",
)
async def document_version(
    request: Request, id: PathId, version: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> JSONResponse:
    resp = await _stub(request).GetDocumentVersion(cr.GetDocumentVersionRequest(document_id=id, version=version))
    return JSONResponse(to_dict(resp.version))


@router.get(
    "/{id}/diff",
    response_model=DocumentDiff,
    responses={200: examples.ok(examples.DOCUMENT_DIFF), **ERROR_RESPONSES},
    summary="A unified diff of two versions' Markdown",
    description="`to` defaults to the current version, `from` to the version before `to`; the diff is "
    "empty when they are equal. 400 naming `from_version` or `to_version` when out of range.",
)
async def document_diff(
    request: Request,
    id: PathId,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=2**31 - 1, description="The older version.")] = None,
    to: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="The newer version.")] = None,
) -> JSONResponse:
    resp = await _stub(request).DiffDocumentVersions(
        cr.DiffDocumentVersionsRequest(document_id=id, from_version=from_ or 0, to_version=to or 0)
    )
    return JSONResponse(to_dict(resp))


@router.get(
    "/{id}/html",
    response_model=DocumentHtml,
    responses={200: examples.ok(examples.DOCUMENT_HTML), **ERROR_RESPONSES},
    summary="A document's Markdown rendered as sanitized HTML (what the web UI shows)",
    description="Rendered by markdown-it (raw HTML of the page escaped) and sanitized by nh3: no "
    "script, event handler or javascript: URL of a crawled page survives.",
)
async def document_html(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetDocument(cr.GetDocumentRequest(id=id))
    # Off the event loop: a large page takes a while to render.
    return JSONResponse({"html": await asyncio.to_thread(safe_html, resp.document.markdown)})
