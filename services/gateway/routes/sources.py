"""/api/sources: CRUD through the executor (auth is write-only: never in a response), and a
source's documents as llms.txt / llms-full.txt from the crawler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from libs.proto_json import enum_value, to_dict
from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import executor_service_pb2 as ex
from quaero.v1 import source_pb2
from services.gateway import examples
from services.gateway.bodies import read_message
from services.gateway.paging import Limit, Offset, OrderDir, page_body
from services.gateway.params import PathId
from services.gateway.schemas import CONFLICT_RESPONSE, ERROR_RESPONSES, TOO_LARGE_RESPONSE, list_model, model_for

router = APIRouter(prefix="/api/sources", tags=["sources"])

Source = model_for(source_pb2.Source.DESCRIPTOR, omit=frozenset({"auth"}))
SourceInput = model_for(
    source_pb2.Source.DESCRIPTOR, mode="request", omit=frozenset({"has_auth", "created_at", "updated_at"})
)
SourceList = list_model("SourceList", "sources", Source)
_OUTPUT_ONLY = ("has_auth", "created_at", "updated_at")
_HIDDEN = frozenset({"auth"})

EXAMPLE = {
    "id": "python-docs",
    "name": "Python docs",
    "type": "web",
    "base_url": "https://docs.python.org/3/",
    "crawl": {"max_depth": 3, "max_pages": 500, "rate_limit": 200},
    "filters": {"include_patterns": ["/3/"], "exclude_patterns": ["/whatsnew/"]},
    "auth": {"headers": {"Authorization": "Bearer …"}},
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SourceInput"}, "example": EXAMPLE},
            "application/toml": {"schema": {"type": "string"}},
        },
    }
}


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.executor


def _out(msg: source_pb2.Source) -> dict:  # type: ignore[type-arg]
    return to_dict(msg, omit=_HIDDEN)


@router.get(
    "",
    response_model=SourceList,
    responses={200: examples.ok(examples.page("sources", examples.SOURCE)), **ERROR_RESPONSES},
    summary="List sources",
)
async def list_sources(
    request: Request,
    type: Annotated[Literal["web", "jira", "confluence", "github"] | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[Literal["created_at", "updated_at", "name"], Query()] = "created_at",
    order_dir: OrderDir = "desc",
) -> JSONResponse:
    req = ex.ListSourcesRequest(limit=limit, offset=offset, order_by=order_by, order_dir=order_dir)
    if type:
        req.type = enum_value(source_pb2.SourceType.DESCRIPTOR, type)
    if enabled is not None:
        req.enabled = enabled
    resp = await _stub(request).ListSources(req)
    return JSONResponse(page_body("sources", (_out(s) for s in resp.sources), resp))


@router.post(
    "",
    status_code=201,
    response_model=Source,
    responses={
        201: examples.ok(examples.SOURCE, "Created"),
        **ERROR_RESPONSES,
        409: CONFLICT_RESPONSE | {"description": "The id exists already."},
        413: TOO_LARGE_RESPONSE,
    },
    openapi_extra=_BODY,
    summary="Create a source (an id is generated when none is given)",
)
async def create_source(request: Request) -> JSONResponse:
    msg, _ = await read_message(request, "source", source_pb2.Source, ignore=_OUTPUT_ONLY)
    resp = await _stub(request).CreateSource(ex.CreateSourceRequest(source=msg))
    return JSONResponse(_out(resp.source), status_code=201)


@router.get(
    "/{id}",
    response_model=Source,
    responses={200: examples.ok(examples.SOURCE), **ERROR_RESPONSES},
    summary="Get a source",
)
async def get_source(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetSource(ex.GetSourceRequest(id=id))
    return JSONResponse(_out(resp.source))


@router.put(
    "/{id}",
    response_model=Source,
    responses={200: examples.ok(examples.SOURCE), **ERROR_RESPONSES, 413: TOO_LARGE_RESPONSE},
    openapi_extra=_BODY,
    summary="Replace a source (stored auth is kept when the body has no `auth` or `auth: null`)",
)
async def update_source(request: Request, id: PathId) -> JSONResponse:
    msg, data = await read_message(request, "source", source_pb2.Source, ignore=_OUTPUT_ONLY)
    msg.id = id
    resp = await _stub(request).UpdateSource(
        ex.UpdateSourceRequest(id=id, source=msg, keep_auth=data.get("auth") is None)
    )
    return JSONResponse(_out(resp.source))


@router.delete("/{id}", status_code=204, responses=ERROR_RESPONSES, summary="Delete a source")
async def delete_source(request: Request, id: PathId) -> Response:
    await _stub(request).DeleteSource(ex.DeleteSourceRequest(id=id))
    return Response(status_code=204)


_LLMS_MEDIA_TYPE = "text/plain; charset=utf-8"


async def _llms_txt(request: Request, id: str, format: cr.LlmsTxtFormat) -> StreamingResponse:
    """The crawler's pieces as they come. The source is looked up and the first piece read before
    the answer starts, so an unknown source or a bad request is still an error answer."""
    source = (await _stub(request).GetSource(ex.GetSourceRequest(id=id))).source
    call = request.app.state.crawler.GetSourceLlmsTxt(
        cr.GetSourceLlmsTxtRequest(source_id=source.id, format=format, name=source.name or source.id)
    )
    pieces = call.__aiter__()
    try:
        first = await pieces.__anext__()
    except StopAsyncIteration:
        first = None

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first.text.encode()
            async for piece in pieces:
                yield piece.text.encode()
        finally:
            call.cancel()

    return StreamingResponse(body(), media_type=_LLMS_MEDIA_TYPE)


def _text_answer(example: str, what: str) -> dict:  # type: ignore[type-arg]
    return {"description": what, "content": {"text/plain": {"schema": {"type": "string"}, "example": example}}}


@router.get(
    "/{id}/llms.txt",
    response_class=StreamingResponse,
    responses={200: _text_answer(examples.LLMS_TXT, "llms.txt"), **ERROR_RESPONSES},
    summary="The source's current documents as llms.txt (llmstxt.org): its name, a summary, sections of links",
    description=(
        "An H1 with the source's name, a blockquote summary, then an H2 section per part of the site "
        "(`Pages` for those at its root first, then one per first path segment, in URL order), each a "
        "list of `- [title](url): description` lines. Removed documents are left out."
    ),
)
async def get_source_llms_txt(request: Request, id: PathId) -> StreamingResponse:
    return await _llms_txt(request, id, cr.LLMS_TXT_FORMAT_INDEX)


@router.get(
    "/{id}/llms-full.txt",
    response_class=StreamingResponse,
    responses={200: _text_answer(examples.LLMS_FULL_TXT, "llms-full.txt"), **ERROR_RESPONSES},
    summary="The source's current documents as llms-full.txt: the llms.txt head, then every document's Markdown",
    description=(
        "The head of llms.txt, then each current document in URL order as `# title`, a `Source: url` "
        "line and its Markdown. Streamed as the documents are read."
    ),
)
async def get_source_llms_full_txt(request: Request, id: PathId) -> StreamingResponse:
    return await _llms_txt(request, id, cr.LLMS_TXT_FORMAT_FULL)
