"""The RunSteps contract the executor relies on: accepted, progress, one finished; safe replays."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from quaero.v1 import crawl_job_pb2, crawler_service_pb2, source_pb2
from tests.support.crawler import (
    accepted_ids,
    crawler_settings,
    run_step,
    running_crawler,
    source,
    step_call,
    wait_for_status,
)
from tests.support.site import serve_site

QUICK = {"max_depth": 1, "max_pages": 5}


async def test_a_crawl_step_is_accepted_then_finishes_ok_with_its_jobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        call = step_call(QUICK, sources=[source("a", site.base + "/"), source("b", site.base + "/docs/")])
        events = await run_step(c.stub, call)

        assert events[0].WhichOneof("kind") == "accepted"
        assert events[-1].WhichOneof("kind") == "finished"
        assert sum(e.HasField("finished") for e in events) == 1
        assert all((e.execution_id, e.step_index, e.attempt) == (call.execution_id, 0, 1) for e in events)
        accepted = events[0].accepted.jobs
        assert [j.source_id for j in accepted] == ["a", "b"]
        finished = events[-1].finished
        assert finished.ok and finished.error == ""
        assert {j.crawl_job_id for j in finished.jobs} == {j.crawl_job_id for j in accepted}
        assert all(j.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED for j in finished.jobs)
        job = (await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=accepted[0].crawl_job_id))).crawl_job
        assert job.metadata.execution_id == call.execution_id
        assert job.metadata.job_definition_id == "test-definition"
        assert (job.metadata.step, job.metadata.attempt) == (0, 1)
        assert job.result_count == 5
        assert job.progress.percentage == 100.0


async def test_a_replayed_step_returns_the_same_jobs_and_never_duplicates_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        call = step_call(QUICK, sources=[source("a", site.base + "/")])
        first = await run_step(c.stub, call)
        second = await run_step(c.stub, call)

        assert accepted_ids(first) == accepted_ids(second)
        assert second[-1].finished.ok
        listed = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(execution_id=call.execution_id))
        assert listed.total_count == 1


async def test_start_urls_make_one_adhoc_job_and_disabled_sources_are_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        adhoc = await run_step(c.stub, step_call({**QUICK, "start_urls": [site.base + "/", site.base + "/blog/"]}))
        disabled = source("off", site.base + "/", enabled=False)
        mixed = await run_step(c.stub, step_call(QUICK, sources=[disabled, source("on", site.base + "/")]))

        assert [j.source_id for j in adhoc[0].accepted.jobs] == ["adhoc:test-definition"]
        assert [j.source_id for j in mixed[0].accepted.jobs] == ["on"]
        assert adhoc[-1].finished.ok and mixed[-1].finished.ok


@pytest.mark.parametrize(
    ("config", "sources", "message"),
    [
        ({}, [], "no start_urls"),
        ({}, [source_pb2.Source(id="x", base_url="http://h/", enabled=False)], "disabled"),
        ({"max_depth": -1, "start_urls": ["http://h/"]}, [], "config.max_depth"),
        ({}, [source_pb2.Source(id="x", base_url="ftp://h/")], "sources[0].base_url"),
    ],
    ids=["nothing-to-crawl", "all-disabled", "bad-option", "bad-base-url"],
)
async def test_a_step_that_cannot_run_finishes_not_ok_naming_the_problem(
    tmp_path, config: dict[str, Any], sources: list[source_pb2.Source], message: str
) -> None:  # type: ignore[no-untyped-def]
    async with running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c:
        events = await run_step(c.stub, step_call(config, sources=sources))

        assert len(events) == 1
        assert not events[0].finished.ok
        assert message in events[0].finished.error


async def test_without_waiting_the_step_finishes_once_the_jobs_exist(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        events = await run_step(
            c.stub, step_call({**QUICK, "wait_for_completion": False}, sources=[source("a", site.base + "/")])
        )

        assert [e.WhichOneof("kind") for e in events] == ["accepted", "finished"]
        assert events[-1].finished.ok
        job = await wait_for_status(c.stub, accepted_ids(events)[0])
        assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_COMPLETED


async def test_several_steps_run_at_once_on_one_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        calls = [
            step_call(QUICK, sources=[source("a", site.base + "/")], execution_id="e1", step_index=0),
            step_call({}, action="reindex", execution_id="e1", step_index=1),
        ]
        done = asyncio.Event()

        async def requests():  # type: ignore[no-untyped-def]
            for call in calls:
                yield crawler_service_pb2.RunStepsRequest(call=call)
            await done.wait()

        finished: dict[int, crawler_service_pb2.StepFinished] = {}
        order: list[int] = []
        stream = c.stub.RunSteps(requests(), timeout=60)
        async for response in stream:
            if response.event.HasField("finished"):
                finished[response.event.step_index] = response.event.finished
                order.append(response.event.step_index)
                if len(finished) == 2:
                    break
        done.set()
        stream.cancel()

        assert finished[0].ok and finished[1].ok
        assert order == [1, 0]  # the reindex did not wait behind the crawl
        assert "documents" in finished[1].result


async def test_cancel_crawl_jobs_cancels_the_execution_and_a_replay_creates_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with (
        serve_site() as site,
        running_crawler(crawler_settings({"database_url": None, "data_dir": tmp_path})) as c,
    ):
        site.pages["/slow.html"].delay = 5
        call = step_call(
            {"max_depth": 2, "wait_for_completion": False, "rate_limit": 300}, sources=[source("a", site.base + "/")]
        )
        (job_id,) = accepted_ids(await run_step(c.stub, call))

        response = await c.stub.CancelCrawlJobs(
            crawler_service_pb2.CancelCrawlJobsRequest(execution_id=call.execution_id, reason="timeout")
        )
        replay = await run_step(c.stub, call)

        assert list(response.cancelled_job_ids) == [job_id]
        assert [e.WhichOneof("kind") for e in replay] == ["finished"]
        assert not replay[0].finished.ok and "cancelled (timeout)" in replay[0].finished.error
        assert [j.crawl_job_id for j in replay[0].finished.jobs] == [job_id]
        listed = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(execution_id=call.execution_id))
        assert listed.total_count == 1
        job = (await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))).crawl_job
        assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_CANCELLED
        assert job.error == "timeout"
        assert job.progress.pending_urls == 0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stub.CancelCrawlJob(crawler_service_pb2.CancelCrawlJobRequest(id=job_id))
        assert err.value.code() == grpc.StatusCode.ABORTED


async def test_a_step_of_an_execution_whose_crawl_jobs_were_cancelled_starts_none(backend: dict[str, Any]) -> None:
    async with running_crawler(crawler_settings(backend)) as c:
        call = step_call({"start_urls": ["http://docs.test/"]})
        await c.stub.CancelCrawlJobs(crawler_service_pb2.CancelCrawlJobsRequest(execution_id=call.execution_id))

        events = await run_step(c.stub, call)
        listed = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(execution_id=call.execution_id))

        assert [e.WhichOneof("kind") for e in events] == ["finished"]
        assert not events[0].finished.ok
        expected = f"execution {call.execution_id} was cancelled (cancelled): no crawl job started"
        assert events[0].finished.error == expected
        assert listed.total_count == 0
