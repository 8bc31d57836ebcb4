"""/api/sources: CRUD through the executor. Auth is write-only: never in a response."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from libs.proto_json import enum_value, to_dict
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
