"""/api/job-definitions: CRUD through the executor."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from libs.proto_json import enum_value, to_dict
from quaero.v1 import executor_service_pb2 as ex
from quaero.v1 import job_definition_pb2
from services.gateway import examples
from services.gateway.bodies import read_message
from services.gateway.paging import Limit, Offset, OrderDir, page_body
from services.gateway.params import PathId
from services.gateway.schemas import CONFLICT_RESPONSE, ERROR_RESPONSES, TOO_LARGE_RESPONSE, list_model, model_for

router = APIRouter(prefix="/api/job-definitions", tags=["job definitions"])

JobDefinition = model_for(job_definition_pb2.JobDefinition.DESCRIPTOR)
JobDefinitionInput = model_for(
    job_definition_pb2.JobDefinition.DESCRIPTOR, mode="request", omit=frozenset({"created_at", "updated_at"})
)
JobDefinitionList = list_model("JobDefinitionList", "job_definitions", JobDefinition)
_OUTPUT_ONLY = ("created_at", "updated_at")

EXAMPLE = {
    "id": "python-docs",
    "name": "Python documentation",
    "type": "crawler",
    "description": "Keep the Python tutorial fresh",
    "schedule": "0 3 * * *",
    "timeout": "30m",
    "steps": [
        {
            "name": "crawl",
            "action": "crawl",
            "config": {"start_urls": ["https://docs.python.org/3/tutorial/"], "max_depth": 2, "max_pages": 200},
            "on_error": "retry",
        },
        {"name": "summary", "action": "corpus_summary", "on_error": "continue"},
    ],
    "post_jobs": ["reindex-weekly"],
    "post_jobs_when": "changed",
    "webhooks": [
        {
            "url": "https://hooks.example.com/quaero",
            "events": ["execution.completed", "execution.failed", "documents.changed"],
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    ],
}
TOML_EXAMPLE = """id = "python-docs"
name = "Python documentation"
type = "crawler"
timeout = "30m"

[[steps]]
name = "crawl"
action = "crawl"
on_error = "retry"

[steps.config]
start_urls = ["https://docs.python.org/3/tutorial/"]
max_depth = 2
"""
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobDefinitionInput"}, "example": EXAMPLE},
            "application/toml": {"schema": {"type": "string"}, "example": TOML_EXAMPLE},
        },
    }
}


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.executor


def _out(msg: job_definition_pb2.JobDefinition) -> dict:  # type: ignore[type-arg]
    return to_dict(msg)


@router.get(
    "",
    response_model=JobDefinitionList,
    responses={200: examples.ok(examples.page("job_definitions", examples.JOB_DEFINITION)), **ERROR_RESPONSES},
    summary="List job definitions",
)
async def list_definitions(
    request: Request,
    type: Annotated[Literal["crawler", "summarizer", "custom"] | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[Literal["created_at", "updated_at", "name"], Query()] = "created_at",
    order_dir: OrderDir = "desc",
) -> JSONResponse:
    req = ex.ListJobDefinitionsRequest(limit=limit, offset=offset, order_by=order_by, order_dir=order_dir)
    if type:
        req.type = enum_value(job_definition_pb2.JobDefinitionType.DESCRIPTOR, type)
    if enabled is not None:
        req.enabled = enabled
    resp = await _stub(request).ListJobDefinitions(req)
    return JSONResponse(page_body("job_definitions", (_out(d) for d in resp.job_definitions), resp))


@router.post(
    "",
    status_code=201,
    response_model=JobDefinition,
    responses={
        201: examples.ok(examples.JOB_DEFINITION, "Created"),
        **ERROR_RESPONSES,
        409: CONFLICT_RESPONSE | {"description": "The id exists already."},
        413: TOO_LARGE_RESPONSE,
    },
    openapi_extra=_BODY,
    summary="Create a job definition (JSON, or TOML with Content-Type application/toml)",
)
async def create_definition(request: Request) -> JSONResponse:
    msg, _ = await read_message(request, "job_definition", job_definition_pb2.JobDefinition, ignore=_OUTPUT_ONLY)
    resp = await _stub(request).CreateJobDefinition(ex.CreateJobDefinitionRequest(job_definition=msg))
    return JSONResponse(_out(resp.job_definition), status_code=201)


@router.get(
    "/{id}",
    response_model=JobDefinition,
    responses={200: examples.ok(examples.JOB_DEFINITION), **ERROR_RESPONSES},
    summary="Get a job definition",
)
async def get_definition(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetJobDefinition(ex.GetJobDefinitionRequest(id=id))
    return JSONResponse(_out(resp.job_definition))


@router.put(
    "/{id}",
    response_model=JobDefinition,
    responses={200: examples.ok(examples.JOB_DEFINITION), **ERROR_RESPONSES, 413: TOO_LARGE_RESPONSE},
    openapi_extra=_BODY,
    summary="Replace a job definition (the path id wins over the body's)",
)
async def update_definition(request: Request, id: PathId) -> JSONResponse:
    msg, _ = await read_message(request, "job_definition", job_definition_pb2.JobDefinition, ignore=_OUTPUT_ONLY)
    msg.id = id
    resp = await _stub(request).UpdateJobDefinition(ex.UpdateJobDefinitionRequest(id=id, job_definition=msg))
    return JSONResponse(_out(resp.job_definition))


@router.delete("/{id}", status_code=204, responses=ERROR_RESPONSES, summary="Delete a job definition")
async def delete_definition(request: Request, id: PathId) -> Response:
    await _stub(request).DeleteJobDefinition(ex.DeleteJobDefinitionRequest(id=id))
    return Response(status_code=204)
