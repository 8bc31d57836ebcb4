"""Executions: start one (202), list, get, cancel, and follow its events (SSE)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from libs.proto_json import enum_value, to_dict
from quaero.v1 import execution_pb2
from quaero.v1 import executor_service_pb2 as ex
from services.gateway import examples
from services.gateway.paging import Limit, Offset, OrderDir, page_body
from services.gateway.params import IdFilter, PathId
from services.gateway.schemas import CONFLICT_RESPONSE, ERROR_RESPONSES, SSE_RESPONSES, list_model, model_for
from services.gateway.sse import EventStreamResponse, LastEventId, sse_response

router = APIRouter(tags=["executions"])

Execution = model_for(
    execution_pb2.Execution.DESCRIPTOR,
    omit=frozenset({"idempotency_key"}),
    nullable=frozenset({"parent_execution_id", "error", "parent_changes"}),
)
ExecutionList = list_model("ExecutionList", "executions", Execution)
WebhookDelivery = model_for(
    execution_pb2.WebhookDelivery.DESCRIPTOR, nullable=frozenset({"next_attempt_at", "delivered_at"})
)
WebhookDeliveryList = list_model("WebhookDeliveryList", "deliveries", WebhookDelivery)
Status = Literal["pending", "running", "completed", "failed", "cancelled"]
_TERMINAL = {execution_pb2.EXECUTION_STATUS_COMPLETED, execution_pb2.EXECUTION_STATUS_FAILED,
             execution_pb2.EXECUTION_STATUS_CANCELLED}  # fmt: skip
# Triggers a caller may claim; `schedule` and `post_job` belong to the executor.
_TRIGGERS = {"api": execution_pb2.TRIGGER_API, "cli": execution_pb2.TRIGGER_CLI}


class ExecutionStarted(BaseModel):
    execution_id: str
    job_definition_id: str
    job_name: str
    status: Status
    message: str


def execution_json(msg: execution_pb2.Execution) -> dict[str, Any]:
    data = to_dict(msg, omit=frozenset({"idempotency_key"}))
    data["parent_execution_id"] = data["parent_execution_id"] or None
    if not msg.HasField("error") or not msg.error.code:
        data["error"] = None
    if not msg.HasField("parent_changes"):
        data["parent_changes"] = None
    return data


def delivery_json(msg: execution_pb2.WebhookDelivery) -> dict[str, Any]:
    data = to_dict(msg)
    for name in ("next_attempt_at", "delivered_at"):
        if not msg.HasField(name):
            data[name] = None
    return data


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.executor


@router.post(
    "/api/job-definitions/{id}/execute",
    status_code=202,
    response_model=ExecutionStarted,
    responses={
        202: examples.ok(examples.EXECUTION_STARTED, "Started; follow it at the Location URL"),
        **ERROR_RESPONSES,
        400: ERROR_RESPONSES[400] | {"description": "Disabled or invalid definition."},
    },
    summary="Execute a job definition: answers at once, the execution runs in the background",
)
async def execute(
    request: Request,
    id: PathId,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="A repeat within 24 h returns the first execution instead of starting another.",
        ),
    ] = None,
    trigger: Annotated[
        Literal["api", "cli"], Query(description="Recorded on the execution: `cli` for the quaero command.")
    ] = "api",
) -> JSONResponse:
    response = await _stub(request).ExecuteJobDefinition(
        ex.ExecuteJobDefinitionRequest(
            job_definition_id=id, idempotency_key=idempotency_key or "", trigger=_TRIGGERS[trigger]
        )
    )
    execution = response.execution
    status = to_dict(execution)["status"]
    body = {
        "execution_id": execution.id,
        "job_definition_id": execution.job_definition_id,
        "job_name": execution.job_name,
        "status": "running" if status == "pending" else status,
        "message": "Job execution started",
    }
    headers = {"Location": f"/api/executions/{execution.id}"}
    if response.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


@router.get(
    "/api/executions",
    response_model=ExecutionList,
    responses={200: examples.ok(examples.page("executions", examples.EXECUTION)), **ERROR_RESPONSES},
    summary="List executions (the post-jobs of one with `parent_execution_id`)",
)
async def list_executions(
    request: Request,
    job_definition_id: IdFilter = None,
    status: Annotated[Status | None, Query()] = None,
    parent_execution_id: IdFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[Literal["created_at", "updated_at"], Query()] = "created_at",
    order_dir: OrderDir = "desc",
) -> JSONResponse:
    req = ex.ListExecutionsRequest(
        job_definition_id=job_definition_id or "",
        parent_execution_id=parent_execution_id or "",
        limit=limit,
        offset=offset,
        order_by=order_by,
        order_dir=order_dir,
    )
    if status:
        req.status = enum_value(execution_pb2.ExecutionStatus.DESCRIPTOR, status)
    resp = await _stub(request).ListExecutions(req)
    return JSONResponse(page_body("executions", (execution_json(e) for e in resp.executions), resp))


@router.get(
    "/api/executions/{id}",
    response_model=Execution,
    responses={200: examples.ok(examples.EXECUTION), **ERROR_RESPONSES},
    summary="Get an execution: steps, crawl job ids, post-jobs and lineage",
)
async def get_execution(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetExecution(ex.GetExecutionRequest(id=id))
    return JSONResponse(execution_json(resp.execution))


@router.get(
    "/api/executions/{id}/webhooks",
    response_model=WebhookDeliveryList,
    responses={200: examples.ok(examples.page("deliveries", examples.WEBHOOK_DELIVERY)), **ERROR_RESPONSES},
    summary="The webhook deliveries of an execution's events: status, attempts, last answer, next attempt",
)
async def list_webhook_deliveries(request: Request, id: PathId, limit: Limit = 50, offset: Offset = 0) -> JSONResponse:
    resp = await _stub(request).ListWebhookDeliveries(
        ex.ListWebhookDeliveriesRequest(execution_id=id, limit=limit, offset=offset)
    )
    return JSONResponse(page_body("deliveries", (delivery_json(d) for d in resp.deliveries), resp))


@router.post(
    "/api/executions/{id}/cancel",
    response_model=Execution,
    responses={
        200: examples.ok(examples.EXECUTION | {"status": "cancelled"}),
        **ERROR_RESPONSES,
        409: CONFLICT_RESPONSE | {"description": "The execution already finished."},
    },
    summary="Cancel an execution and its running crawl jobs",
)
async def cancel_execution(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).CancelExecution(ex.CancelExecutionRequest(id=id))
    return JSONResponse(execution_json(resp.execution))


@router.get(
    "/api/executions/{id}/events",
    response_class=EventStreamResponse,
    responses=SSE_RESPONSES,
    summary="Follow an execution: a snapshot, then every event until it ends (resume with Last-Event-ID)",
)
async def execution_events(request: Request, id: PathId, after: LastEventId) -> Response:
    stub = _stub(request)
    # Fail fast (404) before committing to a 200 stream.
    current = (await stub.GetExecution(ex.GetExecutionRequest(id=id))).execution
    call = stub.WatchExecution(ex.WatchExecutionRequest(id=id, after_event_id=after))

    def render(message: ex.WatchExecutionResponse) -> tuple[int, str, dict[str, Any]]:
        event = to_dict(message.event)
        return message.event.id, message.event.type, {"event": event, "execution": execution_json(message.execution)}

    finished = after > 0 and current.status in _TERMINAL
    return await sse_response(call, render, finished=finished)
