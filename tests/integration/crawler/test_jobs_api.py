"""Crawl job RPCs: get, list, watch, logs, URLs, cancel, rerun, delete; errors name the field."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    job_documents,
    run_step,
    running_crawler,
    source,
    step_call,
    wait_for_status,
)
from tests.support.site import serve_site

TERMINAL = {"completed", "failed", "cancelled"}


def embedded(tmp_path: Path):  # type: ignore[no-untyped-def]
    return running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path}))


async def test_watch_sends_a_snapshot_then_events_until_exactly_one_terminal_event(tmp_path: Path) -> None:
    async with serve_site() as site, embedded(tmp_path) as c:
        call = step_call({"max_depth": 2, "wait_for_completion": False}, sources=[source("a", site.base + "/")])
        (job_id,) = accepted_ids(await run_step(c.stub, call))

        events = [
            r async for r in c.stub.WatchCrawlJob(crawler_service_pb2.WatchCrawlJobRequest(id=job_id), timeout=60)
        ]
        replay = [
            r
            async for r in c.stub.WatchCrawlJob(
                crawler_service_pb2.WatchCrawlJobRequest(id=job_id, after_event_id=events[0].event.id), timeout=60
            )
        ]

        assert events[0].event.type == "snapshot"
        types = [r.event.type for r in events[1:]]
        assert sum(t in TERMINAL for t in types) + (events[0].crawl_job.status != 2) == 1
        assert events[-1].crawl_job.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED
        ids = [r.event.id for r in events[1:]]
        assert ids == sorted(ids) and all(i > events[0].event.id for i in ids)
        assert [r.event.id for r in replay] == ids
        assert replay[-1].event.type == "completed"


async def test_logs_filter_by_level_and_urls_by_state_and_reason(tmp_path: Path) -> None:
    async with serve_site() as site, embedded(tmp_path) as c:
        events = await run_step(c.stub, step_call({"max_depth": 1}, sources=[source("a", site.base + "/")]))
        (job_id,) = accepted_ids(events)

        every = await c.stub.ListJobLogs(crawler_service_pb2.ListJobLogsRequest(job_id=job_id, limit=500))
        warn = await c.stub.ListJobLogs(
            crawler_service_pb2.ListJobLogsRequest(job_id=job_id, level=crawl_job_pb2.LOG_LEVEL_WARN, limit=500)
        )
        offsite = await c.stub.ListCrawlUrls(
            crawler_service_pb2.ListCrawlUrlsRequest(
                job_id=job_id, state=crawl_job_pb2.CRAWL_URL_STATE_SKIPPED, reason="offsite"
            )
        )

        assert 0 < warn.total_count < every.total_count
        assert all(e.level >= crawl_job_pb2.LOG_LEVEL_WARN for e in warn.logs)
        assert {u.url for u in offsite.urls} == {
            "http://external.example/page",
            "https://other.invalid/",
            "http://external.example/landing",
        }


async def test_rerun_creates_a_new_job_that_really_runs(tmp_path: Path) -> None:
    async with serve_site() as site, embedded(tmp_path) as c:
        call = step_call({"max_depth": 1}, sources=[source("a", site.base + "/")], job_definition_id="def-1")
        (job_id,) = accepted_ids(await run_step(c.stub, call))

        rerun = await c.stub.RerunCrawlJob(crawler_service_pb2.RerunCrawlJobRequest(id=job_id))
        done = await wait_for_status(c.stub, rerun.crawl_job.id)

        assert rerun.original_job_id == job_id and rerun.crawl_job.id != job_id
        assert done.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED
        assert done.metadata.job_definition_id == "def-1"
        assert done.metadata.rerun_of == job_id
        assert done.metadata.execution_id == ""
        assert sorted(await job_documents(c.stub, done.id)) == sorted(await job_documents(c.stub, job_id))


async def test_delete_is_refused_while_running_and_removes_a_finished_job(tmp_path: Path) -> None:
    async with serve_site() as site, embedded(tmp_path) as c:
        site.pages["/slow.html"].delay = 3
        call = step_call(
            {"max_depth": 1, "wait_for_completion": False}, sources=[source("a", site.base + "/slow.html")]
        )
        (job_id,) = accepted_ids(await run_step(c.stub, call))

        with pytest.raises(grpc.aio.AioRpcError) as running:
            await c.stub.DeleteCrawlJob(crawler_service_pb2.DeleteCrawlJobRequest(id=job_id))
        await wait_for_status(c.stub, job_id)
        await c.stub.DeleteCrawlJob(crawler_service_pb2.DeleteCrawlJobRequest(id=job_id))
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))

        assert running.value.code() == grpc.StatusCode.ABORTED
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("call", "code", "field"),
    [
        (lambda s: s.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id="nope")), grpc.StatusCode.NOT_FOUND, ""),
        (lambda s: s.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest()), grpc.StatusCode.INVALID_ARGUMENT, "id"),
        (
            lambda s: s.CancelCrawlJob(crawler_service_pb2.CancelCrawlJobRequest(id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            lambda s: s.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(limit=501)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "limit",
        ),
        (
            lambda s: s.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(order_by="status")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "order_by",
        ),
        (
            lambda s: s.SearchDocuments(crawler_service_pb2.SearchDocumentsRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "query",
        ),
        (lambda s: s.GetDocument(crawler_service_pb2.GetDocumentRequest(id="nope")), grpc.StatusCode.NOT_FOUND, ""),
        (lambda s: s.ListJobLogs(crawler_service_pb2.ListJobLogsRequest(job_id="nope")), grpc.StatusCode.NOT_FOUND, ""),
        (
            lambda s: s.ListCrawlUrls(crawler_service_pb2.ListCrawlUrlsRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "job_id",
        ),
    ],
    ids=[
        "get-unknown",
        "get-no-id",
        "cancel-unknown",
        "list-limit",
        "list-order",
        "search-no-query",
        "doc-unknown",
        "logs-unknown",
        "urls-no-job",
    ],
)
async def test_bad_requests_get_clear_codes(tmp_path: Path, call, code: grpc.StatusCode, field: str) -> None:  # type: ignore[no-untyped-def]
    async with embedded(tmp_path) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(c.stub)

        assert err.value.code() == code
        assert field in (err.value.details() or "")
