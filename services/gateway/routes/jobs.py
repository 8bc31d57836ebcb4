"""Crawl jobs: the only jobs there are (one per source per crawl step attempt)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from libs.proto_json import enum_value, to_dict
from quaero.v1 import crawl_job_pb2
from quaero.v1 import crawler_service_pb2 as cr
from services.gateway.schemas import ERROR_RESPONSES, list_model, model_for

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

CrawlJob = model_for(crawl_job_pb2.CrawlJob.DESCRIPTOR)
CrawlJobList = list_model("CrawlJobList", "jobs", CrawlJob)
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


def job_json(msg: crawl_job_pb2.CrawlJob) -> dict[str, Any]:
    return to_dict(msg)


def _stub(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.crawler


@router.get("", response_model=CrawlJobList, responses=ERROR_RESPONSES, summary="List crawl jobs")
async def list_jobs(
    request: Request,
    status: Annotated[JobStatus | None, Query()] = None,
    job_definition_id: Annotated[str | None, Query()] = None,
    execution_id: Annotated[str | None, Query()] = None,
    source_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    order_by: Annotated[Literal["created_at", "updated_at", "name"], Query()] = "created_at",
    order_dir: Annotated[Literal["asc", "desc"], Query()] = "desc",
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
    return JSONResponse(
        {
            "jobs": [job_json(j) for j in resp.crawl_jobs],
            "total_count": resp.total_count,
            "limit": resp.limit,
            "offset": resp.offset,
        }
    )


@router.get("/{id}", response_model=CrawlJob, responses=ERROR_RESPONSES, summary="Get a crawl job")
async def get_job(request: Request, id: str) -> JSONResponse:
    resp = await _stub(request).GetCrawlJob(cr.GetCrawlJobRequest(id=id))
    return JSONResponse(job_json(resp.crawl_job))
