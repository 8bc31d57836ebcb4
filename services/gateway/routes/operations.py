"""Operations: liveness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs import metrics
from libs.proto_json import enum_choices, enum_value
from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import execution_pb2
from quaero.v1 import executor_service_pb2 as ex

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])

# A scrape must not hang on a slow service: its counts are skipped and it reads as down.
_SCRAPE_TIMEOUT = 3.0
_EXECUTION_STATUS = execution_pb2.ExecutionStatus.DESCRIPTOR


@router.get(
    "/healthz",
    responses={
        200: {"description": "The gateway is up", "content": {"application/json": {"example": {"status": "ok"}}}}
    },
    summary="Liveness of the gateway (never needs the API token)",
)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _count_executions(request: Request) -> None:
    stub = request.app.state.executor
    statuses = enum_choices(_EXECUTION_STATUS)
    responses = await asyncio.gather(
        *(
            stub.ListExecutions(
                ex.ListExecutionsRequest(status=enum_value(_EXECUTION_STATUS, s), limit=1),
                timeout=_SCRAPE_TIMEOUT,
            )
            for s in statuses
        )
    )
    for status, response in zip(statuses, responses, strict=True):
        metrics.EXECUTIONS.labels(status).set(response.total_count)


async def _count_crawl_jobs(request: Request) -> None:
    stats = await request.app.state.crawler.GetCrawlJobStats(cr.GetCrawlJobStatsRequest(), timeout=_SCRAPE_TIMEOUT)
    for status in ("pending", "running", "completed", "failed", "cancelled"):
        metrics.CRAWL_JOBS.labels(status).set(getattr(stats, status))


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}
    },
    summary="Prometheus metrics: requests and errors by route and RPC, executions and crawl jobs by status, …",
)
async def prometheus_metrics(request: Request) -> Response:
    # Counts by status live in the services' databases: read them now, at scrape time.
    for service, count in (("executor", _count_executions), ("crawler", _count_crawl_jobs)):
        try:
            await count(request)
            metrics.SERVICE_UP.labels(service).set(1)
        except Exception:
            log.debug("could not read %s counts for /metrics", service, exc_info=True)
            metrics.SERVICE_UP.labels(service).set(0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
