"""Crawl jobs: the only jobs there are (one per source per crawl step attempt), with their logs,
frontier URLs, documents and events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from libs.proto_json import enum_value, to_dict
from quaero.v1 import crawl_job_pb2
from quaero.v1 import crawler_service_pb2 as cr
from services.gateway import examples
from services.gateway.paging import Limit, Offset, OrderDir, page_body
from services.gateway.params import IdFilter, PathId, Storable
from services.gateway.routes.documents import DocumentSummaryList, document_summary_json
from services.gateway.schemas import CONFLICT_RESPONSE, ERROR_RESPONSES, SSE_RESPONSES, list_model, model_for
from services.gateway.sse import EventStreamResponse, LastEventId, sse_response

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

CrawlJob = model_for(crawl_job_pb2.CrawlJob.DESCRIPTOR)
CrawlJobList = list_model("CrawlJobList", "jobs", CrawlJob)
JobLog = model_for(crawl_job_pb2.JobLog.DESCRIPTOR)
JobLogList = list_model("JobLogList", "logs", JobLog)
CrawlUrl = model_for(crawl_job_pb2.CrawlUrl.DESCRIPTOR)
CrawlUrlList = list_model("CrawlUrlList", "urls", CrawlUrl)
DocumentChange = model_for(crawl_job_pb2.DocumentChange.DESCRIPTOR)
DocumentChangeList = list_model("DocumentChangeList", "changes", DocumentChange)
ChangeKind = Literal["new", "changed", "unchanged", "removed"]
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
_TERMINAL = {crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED, crawl_job_pb2.CRAWL_JOB_STATUS_FAILED,
             crawl_job_pb2.CRAWL_JOB_STATUS_CANCELLED}  # fmt: skip
UrlState = Literal["queued", "done", "failed", "skipped", "cancelled"]
_URL_REASONS = (
    "skipped: robots, depth, pattern, offsite, budget, content_type, too_large, redirect_limit, scheme, "
    "blocked_address; failed: http_status, fetch_error, poison"
)
# `warning` is what Python's logging calls it; the API answers with `warn`.
LogLevel = Literal["debug", "info", "warn", "warning", "error"]


class JobStats(BaseModel):
    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class JobRerun(BaseModel):
    original_job_id: str
    new_job_id: str


def job_json(msg: crawl_job_pb2.CrawlJob) -> dict[str, Any]:
    return to_dict(msg)


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.crawler


async def _ensure_job(request: Request, id: str) -> None:
    """404 for an unknown job, so its sub-resources never answer an empty list instead."""
    await _stub(request).GetCrawlJob(cr.GetCrawlJobRequest(id=id))


@router.get(
    "",
    response_model=CrawlJobList,
    responses={200: examples.ok(examples.page("jobs", examples.CRAWL_JOB)), **ERROR_RESPONSES},
    summary="List crawl jobs (an execution's jobs across steps and attempts with `execution_id`)",
)
async def list_jobs(
    request: Request,
    status: Annotated[JobStatus | None, Query()] = None,
    job_definition_id: IdFilter = None,
    execution_id: IdFilter = None,
    source_id: IdFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[Literal["created_at", "updated_at", "name"], Query()] = "created_at",
    order_dir: OrderDir = "desc",
) -> JSONResponse:
    req = cr.ListCrawlJobsRequest(
        job_definition_id=job_definition_id or "",
        execution_id=execution_id or "",
        source_id=source_id or "",
        limit=limit,
        offset=offset,
        order_by=order_by,
        order_dir=order_dir,
    )
    if status:
        req.status = enum_value(crawl_job_pb2.CrawlJobStatus.DESCRIPTOR, status)
    resp = await _stub(request).ListCrawlJobs(req)
    return JSONResponse(page_body("jobs", (job_json(j) for j in resp.crawl_jobs), resp))


# Declared before /{id} so "stats" is never taken for a job id.
@router.get(
    "/stats",
    response_model=JobStats,
    responses={200: examples.ok(examples.JOB_STATS), **ERROR_RESPONSES},
    summary="Count crawl jobs by status",
)
async def job_stats(request: Request) -> JSONResponse:
    resp = await _stub(request).GetCrawlJobStats(cr.GetCrawlJobStatsRequest())
    return JSONResponse({key: getattr(resp, key) for key in JobStats.model_fields})


@router.get(
    "/{id}",
    response_model=CrawlJob,
    responses={200: examples.ok(examples.CRAWL_JOB), **ERROR_RESPONSES},
    summary="Get a crawl job",
)
async def get_job(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).GetCrawlJob(cr.GetCrawlJobRequest(id=id))
    return JSONResponse(job_json(resp.crawl_job))


@router.post(
    "/{id}/cancel",
    response_model=CrawlJob,
    responses={
        200: examples.ok(examples.CRAWL_JOB | {"status": "cancelled"}),
        **ERROR_RESPONSES,
        409: CONFLICT_RESPONSE,
    },
    summary="Cancel a running crawl job (409 when it already finished)",
)
async def cancel_job(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).CancelCrawlJob(cr.CancelCrawlJobRequest(id=id))
    return JSONResponse(job_json(resp.crawl_job))


@router.post(
    "/{id}/rerun",
    status_code=201,
    response_model=JobRerun,
    responses={201: examples.ok(examples.RERUN, "The new job, already running"), **ERROR_RESPONSES},
    summary="Run a crawl job again: a new job with the same seeds, config and source",
)
async def rerun_job(request: Request, id: PathId) -> JSONResponse:
    resp = await _stub(request).RerunCrawlJob(cr.RerunCrawlJobRequest(id=id))
    return JSONResponse(
        {"original_job_id": resp.original_job_id or id, "new_job_id": resp.crawl_job.id},
        status_code=201,
        headers={"Location": f"/api/jobs/{resp.crawl_job.id}"},
    )


@router.delete(
    "/{id}",
    status_code=204,
    responses={**ERROR_RESPONSES, 409: CONFLICT_RESPONSE},
    summary="Delete a finished crawl job (409 while it runs)",
)
async def delete_job(request: Request, id: PathId) -> Response:
    await _stub(request).DeleteCrawlJob(cr.DeleteCrawlJobRequest(id=id))
    return Response(status_code=204)


@router.get(
    "/{id}/logs",
    response_model=JobLogList,
    responses={200: examples.ok(examples.page("logs", examples.JOB_LOG)), **ERROR_RESPONSES},
    summary="A crawl job's log, newest first unless `order=asc`",
)
async def job_logs(
    request: Request,
    id: PathId,
    level: Annotated[LogLevel | None, Query(description="This level and above (`warning` means `warn`).")] = None,
    order: OrderDir = "desc",
    limit: Limit = 50,
    offset: Offset = 0,
) -> JSONResponse:
    await _ensure_job(request, id)
    req = cr.ListJobLogsRequest(job_id=id, order=order, limit=limit, offset=offset)
    if level:
        req.level = enum_value(crawl_job_pb2.LogLevel.DESCRIPTOR, "warn" if level == "warning" else level)
    resp = await _stub(request).ListJobLogs(req)
    return JSONResponse(page_body("logs", (to_dict(entry) for entry in resp.logs), resp))


@router.get(
    "/{id}/urls",
    response_model=CrawlUrlList,
    responses={200: examples.ok(examples.page("urls", examples.CRAWL_URL)), **ERROR_RESPONSES},
    summary="A crawl job's frontier: every URL with its state, skip reason and HTTP status",
)
async def job_urls(
    request: Request,
    id: PathId,
    state: Annotated[UrlState | None, Query()] = None,
    reason: Annotated[str | None, Query(max_length=64, description=_URL_REASONS), Storable] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JSONResponse:
    await _ensure_job(request, id)
    req = cr.ListCrawlUrlsRequest(job_id=id, reason=reason or "", limit=limit, offset=offset)
    if state:
        req.state = enum_value(crawl_job_pb2.CrawlUrlState.DESCRIPTOR, state)
    resp = await _stub(request).ListCrawlUrls(req)
    return JSONResponse(page_body("urls", (to_dict(u) for u in resp.urls), resp))


@router.get(
    "/{id}/changes",
    response_model=DocumentChangeList,
    responses={200: examples.ok(examples.page("changes", examples.DOCUMENT_CHANGE)), **ERROR_RESPONSES},
    summary="What a crawl job found of its source's documents: each new, changed, unchanged or removed one",
    description="The documents the crawl reached, in frontier order, each labelled with its change and the "
    "content hashes before and after; then the documents a completed crawl did not reach, `removed`. "
    "`change` keeps one label.",
)
async def job_changes(
    request: Request,
    id: PathId,
    change: Annotated[ChangeKind | None, Query(description="Only documents with this label.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JSONResponse:
    req = cr.ListJobChangesRequest(job_id=id, limit=limit, offset=offset)
    if change:
        req.change = enum_value(crawl_job_pb2.DocumentChangeKind.DESCRIPTOR, change)
    resp = await _stub(request).ListJobChanges(req)
    return JSONResponse(page_body("changes", (to_dict(c) for c in resp.changes), resp))


@router.get(
    "/{id}/documents",
    response_model=DocumentSummaryList,
    responses={200: examples.ok(examples.page("documents", examples.DOCUMENT_SUMMARY)), **ERROR_RESPONSES},
    summary="The documents a crawl job fetched (without Markdown)",
)
async def job_documents(
    request: Request,
    id: PathId,
    limit: Limit = 50,
    offset: Offset = 0,
    order_by: Annotated[Literal["created_at", "updated_at", "title"], Query()] = "created_at",
    order_dir: OrderDir = "desc",
) -> JSONResponse:
    await _ensure_job(request, id)
    resp = await _stub(request).ListDocuments(
        cr.ListDocumentsRequest(job_id=id, limit=limit, offset=offset, order_by=order_by, order_dir=order_dir)
    )
    return JSONResponse(page_body("documents", (document_summary_json(d) for d in resp.documents), resp))


@router.get(
    "/{id}/events",
    response_class=EventStreamResponse,
    responses=SSE_RESPONSES,
    summary="Follow a crawl job: a snapshot, then every event until it ends (resume with Last-Event-ID)",
)
async def job_events(request: Request, id: PathId, after: LastEventId) -> Response:
    stub = _stub(request)
    # Fail fast (404) before committing to a 200 stream.
    current = (await stub.GetCrawlJob(cr.GetCrawlJobRequest(id=id))).crawl_job
    call = stub.WatchCrawlJob(cr.WatchCrawlJobRequest(id=id, after_event_id=after))

    def render(message: cr.WatchCrawlJobResponse) -> tuple[int, str, dict[str, Any]]:
        return (
            message.event.id,
            message.event.type,
            {"event": to_dict(message.event), "job": job_json(message.crawl_job)},
        )

    finished = after > 0 and current.status in _TERMINAL
    return await sse_response(call, render, finished=finished)
