"""Executing job definitions: one visible job per crawl, steps streamed to the crawler, error
strategies, timeouts, cancellation. Includes the Go executor's behaviours (reference section 5)
adapted to the stream-based design, and a test for each of the Go system's bugs we fix."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import executor_service_pb2 as ex
from tests.support.runs import add_source, define, events, execute, get_execution, jobs, wait_for, wait_until
from tests.support.services import Stack
from tests.support.site import LocalSite, small_site


def crawl_step(url: str, **config: Any) -> dict[str, Any]:
    on_error = config.pop("on_error", "fail")
    return {
        "name": "crawl",
        "action": "crawl",
        "on_error": on_error,
        "config": {"start_urls": [url], "max_depth": 1, **config},
    }


REINDEX = {"name": "reindex", "action": "reindex"}


# ------------------------------------------------------------------------- plan 1: one job


async def test_execute_answers_202_at_once_with_the_execution(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "docs", "name": "Docs", "steps": [crawl_step(site.url())]})
    body = await execute(stack, "docs")
    assert body["status"] == "running" and body["message"] == "Job execution started"
    assert (body["job_definition_id"], body["job_name"]) == ("docs", "Docs")
    done = await wait_for(stack, body["execution_id"])
    assert done["status"] == "completed", done
    assert done["trigger"] == "api" and done["steps"][0]["status"] == "completed"


async def test_two_sources_make_exactly_two_jobs_and_nothing_else(
    stack: Stack, site: LocalSite, second_site: LocalSite
) -> None:
    await add_source(stack, "one", site.url())
    await add_source(stack, "two", second_site.url("/other/"))
    await define(stack, {"id": "both", "sources": ["one", "two"], "steps": [{"name": "crawl", "action": "crawl"}]})
    execution_id = (await execute(stack, "both"))["execution_id"]
    assert (await wait_for(stack, execution_id))["status"] == "completed"
    listed = await jobs(stack)
    assert len(listed) == 2  # no wrapper job, no parent job, no second row per execution
    assert {j["source_id"] for j in listed} == {"one", "two"}
    for job in listed:
        assert job["metadata"]["job_definition_id"] == "both"
        assert job["metadata"]["execution_id"] == execution_id
        assert job["status"] == "completed"
    assert (await stack.http.get("/api/executions")).json()["total_count"] == 1


async def test_crawl_job_ids_follow_source_order(stack: Stack, site: LocalSite, second_site: LocalSite) -> None:
    """Crawl action item 4: the step's crawl_job_ids, one per source, in the sources' order."""
    await add_source(stack, "b-first", second_site.url("/other/"))
    await add_source(stack, "a-second", site.url())
    steps = [{"name": "crawl", "action": "crawl", "config": {"wait_for_completion": False}}]
    await define(stack, {"id": "ordered", "sources": ["b-first", "a-second"], "steps": steps})
    execution = await wait_for(stack, (await execute(stack, "ordered"))["execution_id"])
    ids = execution["steps"][0]["crawl_job_ids"]
    assert len(ids) == 2
    sources = [(await stack.http.get(f"/api/jobs/{i}")).json()["source_id"] for i in ids]
    assert sources == ["b-first", "a-second"]


async def test_unknown_disabled_and_invalid_definitions(stack: Stack, site: LocalSite) -> None:
    assert (await stack.http.post("/api/job-definitions/ghost/execute")).status_code == 404
    await define(stack, {"id": "off", "enabled": False, "steps": [crawl_step(site.url())]})
    disabled = await stack.http.post("/api/job-definitions/off/execute")
    assert disabled.status_code == 400 and disabled.json()["error"]["code"] == "FAILED_PRECONDITION"
    # Go executor item 3: a definition that no longer validates (its source is gone) is refused.
    await add_source(stack, "gone", site.url())
    await define(stack, {"id": "orphan", "sources": ["gone"], "steps": [{"name": "crawl", "action": "crawl"}]})
    await stack.http.delete("/api/sources/gone")
    invalid = await stack.http.post("/api/job-definitions/orphan/execute")
    assert invalid.status_code == 400
    assert [d["field"] for d in invalid.json()["error"]["details"]] == ["sources[0]"]
    assert (await stack.http.get("/api/executions")).json()["total_count"] == 0


async def test_unknown_action_is_refused_when_executed(stack: Stack) -> None:
    """Go executor item 8: a stored definition whose action the crawler does not offer."""
    from libs.db import Database
    from services.executor.definitions import JobDefinition, Step
    from services.executor.store import ExecutorStore

    db = Database(stack.database_url, "executor")
    try:
        definition = JobDefinition(id="legacy", name="Legacy", type="crawler", steps=[Step("t", "transform")])
        await ExecutorStore(db).save_definition(definition, mode="create", validate=lambda *_: [])
    finally:
        await db.close()
    response = await stack.http.post("/api/job-definitions/legacy/execute")
    assert response.status_code == 400
    assert "unknown action 'transform'" in response.json()["error"]["message"]


async def test_idempotency_key_returns_the_first_execution(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "docs", "steps": [crawl_step(site.url())]})
    first = await execute(stack, "docs", key="nightly-2026-11-22")
    again = await stack.http.post(
        "/api/job-definitions/docs/execute", headers={"Idempotency-Key": "nightly-2026-11-22"}
    )
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["execution_id"] == first["execution_id"]
    other = await execute(stack, "docs", key="nightly-2026-11-23")
    assert other["execution_id"] != first["execution_id"]
    for body in (first, other):
        await wait_for(stack, body["execution_id"])
    assert (await stack.http.get("/api/executions")).json()["total_count"] == 2


async def test_a_repeated_key_answers_even_after_the_definition_was_disabled_or_deleted(stack: Stack) -> None:
    body = {"id": "keyed", "type": "custom", "steps": [REINDEX]}
    await define(stack, body)
    first = await execute(stack, "keyed", key="k1")
    await wait_for(stack, first["execution_id"])
    response = await stack.http.put("/api/job-definitions/keyed", json={**body, "name": "Keyed", "enabled": False})
    assert response.status_code == 200, response.text

    again = await stack.http.post("/api/job-definitions/keyed/execute", headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202, again.text
    assert again.json()["execution_id"] == first["execution_id"] and again.json()["status"] == "completed"
    fresh = await stack.http.post("/api/job-definitions/keyed/execute", headers={"Idempotency-Key": "k2"})
    assert fresh.status_code == 400  # a new request still meets the checks
    assert (await stack.http.delete("/api/job-definitions/keyed")).status_code == 204
    gone = await stack.http.post("/api/job-definitions/keyed/execute", headers={"Idempotency-Key": "k1"})
    assert gone.status_code == 202 and gone.json()["execution_id"] == first["execution_id"]


async def test_concurrent_requests_with_one_key_start_one_execution(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "docs", "steps": [crawl_step(site.url())]})
    bodies = await asyncio.gather(*(execute(stack, "docs", key="same") for _ in range(8)))
    assert len({b["execution_id"] for b in bodies}) == 1
    await wait_for(stack, bodies[0]["execution_id"])
    assert len(await jobs(stack)) == 1


# ----------------------------------------------------------------- steps and error strategies


async def test_two_successful_steps_and_their_events(stack: Stack, site: LocalSite) -> None:
    """Go executor item 2 (crawl then another step), with the events it publishes."""
    await define(stack, {"id": "two", "steps": [crawl_step(site.url()), REINDEX]})
    execution = await wait_for(stack, (await execute(stack, "two"))["execution_id"])
    assert execution["status"] == "completed"
    assert [s["status"] for s in execution["steps"]] == ["completed", "completed"]
    types = [t for t, _ in await events(stack, execution["id"])]
    assert types[0] == "created" and types[-1] == "completed"
    assert types.count("step_started") == 2 and types.count("step_completed") == 2
    assert sum(t in ("completed", "failed", "cancelled") for t in types) == 1


async def test_wait_for_completion_holds_later_steps(stack: Stack, site: LocalSite) -> None:
    """Go bug 9: the step after a crawl used to start at once. Now corpus_summary sees every page."""
    site.delay = 0.1
    await define(stack, {"id": "then", "steps": [crawl_step(site.url()), {"name": "s", "action": "corpus_summary"}]})
    execution = await wait_for(stack, (await execute(stack, "then"))["execution_id"])
    assert execution["status"] == "completed"
    [job] = await jobs(stack, execution_id=execution["id"])
    history = await events(stack, execution["id"])
    crawl_done = next(i for i, (t, p) in enumerate(history) if t == "step_completed" and p["step_index"] == 0)
    summary_started = next(i for i, (t, p) in enumerate(history) if t == "step_started" and p["step_index"] == 1)
    assert crawl_done < summary_started
    assert job["status"] == "completed" and job["result_count"] == 5
    # The summary counts every crawled page: it ran after the crawl had finished.
    [summary_done] = [p for t, p in history if t == "step_completed" and p["step_index"] == 1]
    assert summary_done["result"]["documents"] == 5
    document = await stack.crawler.GetDocument(cr.GetDocumentRequest(id=summary_done["result"]["document_id"]))
    assert "- Documents: 5" in document.document.markdown


async def test_wait_for_completion_false_ends_the_step_when_jobs_exist(stack: Stack) -> None:
    """Go executor item 18: no waiting, no progress events; the crawl carries on by itself."""
    site = LocalSite()
    site.add("/", "Home", ["/a.html"])
    site.add("/a.html", "A")
    site.close()  # no page can be fetched until the execution has ended
    async with site.serve():
        try:
            await define(stack, {"id": "nowait", "steps": [crawl_step(site.url(), wait_for_completion=False)]})
            execution = await wait_for(stack, (await execute(stack, "nowait"))["execution_id"])
            assert execution["status"] == "completed"
            [job] = await jobs(stack, execution_id=execution["id"])
            assert job["status"] == "running"  # still crawling after the execution completed
            assert not [t for t, _ in await events(stack, execution["id"]) if t == "step_progress"]
        finally:
            site.open()
        await wait_until(lambda: _job_status(stack, job["id"], "completed"))


async def _job_status(stack: Stack, job_id: str, status: str) -> bool:
    return (await stack.http.get(f"/api/jobs/{job_id}")).json()["status"] == status  # type: ignore[no-any-return]


async def test_progress_events_carry_crawl_counters(stack: Stack) -> None:
    """Go executor item 15: progress events name the crawl job and its counters."""
    slow = small_site(6)
    slow.delay = 0.3
    async with slow.serve():
        await define(stack, {"id": "progress", "steps": [crawl_step(slow.url(), concurrency=1)]})
        execution = await wait_for(stack, (await execute(stack, "progress"))["execution_id"])
    assert execution["status"] == "completed"
    progress = [p for t, p in await events(stack, execution["id"]) if t == "step_progress"]
    assert len(progress) >= 2
    for payload in progress:
        [job] = payload["jobs"]
        assert {"crawl_job_id", "source_type", "total_urls", "completed_urls", "percentage"} <= set(job)
        assert job["crawl_job_id"] == execution["steps"][0]["crawl_job_ids"][0]


async def test_fail_stops_at_the_failing_step(stack: Stack, site: LocalSite) -> None:
    """Go executor item 6: on_error fail (and the default) ends the execution at the step."""
    await define(stack, {"id": "stop", "steps": [crawl_step(site.url("/missing")), REINDEX]})
    execution = await wait_for(stack, (await execute(stack, "stop"))["execution_id"])
    assert execution["status"] == "failed"
    assert execution["error"]["code"] == "step_failed"
    assert execution["error"]["message"].startswith("execution failed at step 0 (crawl)")
    # A finished execution has final steps: the one never started is cancelled.
    assert [s["status"] for s in execution["steps"]] == ["failed", "cancelled"]


async def test_continue_runs_later_steps_and_still_fails(stack: Stack, site: LocalSite) -> None:
    """Go executor items 5 and 16: continue goes on; DESIGN: the execution still ends failed."""
    await define(stack, {"id": "onward", "steps": [crawl_step(site.url("/missing"), on_error="continue"), REINDEX]})
    execution = await wait_for(stack, (await execute(stack, "onward"))["execution_id"])
    assert execution["status"] == "failed"
    assert [s["status"] for s in execution["steps"]] == ["failed", "completed"]
    assert execution["error"]["message"].startswith("1 error(s): step 0 (crawl)")
    [failed] = [p for t, p in await events(stack, execution["id"]) if t == "step_failed"]
    [job] = failed["jobs"]
    assert job["status"] == "failed" and job["error"] and job["failed_urls"] > 0


async def test_two_failing_steps_with_continue_report_both(stack: Stack, site: LocalSite) -> None:
    """Go executor item 10."""
    steps = [crawl_step(site.url("/nope-1"), on_error="continue"), crawl_step(site.url("/nope-2"), on_error="continue")]
    await define(stack, {"id": "twice", "steps": steps})
    execution = await wait_for(stack, (await execute(stack, "twice"))["execution_id"])
    assert execution["status"] == "failed"
    assert execution["error"]["message"].startswith("2 error(s):")
    assert execution["post_jobs"]["state"] == "none"


async def test_two_jobs_one_fails(stack: Stack, site: LocalSite) -> None:
    """Go executor item 19 and crawl action item 5: both attempted, both reported."""
    await add_source(stack, "good", site.url())
    await add_source(stack, "bad", site.url("/missing-root"))
    steps = [{"name": "crawl", "action": "crawl", "on_error": "continue"}]
    await define(stack, {"id": "mixed", "sources": ["good", "bad"], "steps": steps})
    execution = await wait_for(stack, (await execute(stack, "mixed"))["execution_id"])
    assert execution["status"] == "failed"
    [failed] = [p for t, p in await events(stack, execution["id"]) if t == "step_failed"]
    assert {j["source_id"]: j["status"] for j in failed["jobs"]} == {"good": "completed", "bad": "failed"}


async def test_retry_succeeds_on_the_third_attempt(stack: Stack, site: LocalSite) -> None:
    """Go executor item 7 (and 12): a step failing twice, then succeeding, with max_retries 3."""
    site.failures["/"] = (2, 404)
    await define(
        stack,
        {"id": "flaky", "steps": [crawl_step(site.url(), on_error="retry", max_retries=3, initial_backoff="50ms")]},
    )
    execution = await wait_for(stack, (await execute(stack, "flaky"))["execution_id"])
    assert execution["status"] == "completed", execution
    step = execution["steps"][0]
    assert step["attempts"] == 3 and len(step["crawl_job_ids"]) == 3
    types = [t for t, _ in await events(stack, execution["id"])]
    assert types.count("step_retry") == 2


async def test_retry_gives_up_after_max_retries(stack: Stack, site: LocalSite) -> None:
    """Go executor item 12: always failing with max_retries 3 -> "failed after 3 retries"."""
    config = {"on_error": "retry", "max_retries": 3, "initial_backoff": 0.01, "max_backoff": "20ms"}
    await define(stack, {"id": "hopeless", "steps": [crawl_step(site.url("/never"), **config)]})
    execution = await wait_for(stack, (await execute(stack, "hopeless"))["execution_id"])
    assert execution["status"] == "failed"
    step = execution["steps"][0]
    assert step["attempts"] == 4
    assert step["error"].startswith("failed after 3 retries:")


async def test_retry_reruns_only_the_failed_sources(stack: Stack, site: LocalSite, second_site: LocalSite) -> None:
    """Go bug 12: retries used to start new crawls of every source."""
    second_site.failures["/other/"] = (1, 404)
    await add_source(stack, "steady", site.url())
    await add_source(stack, "flaky", second_site.url("/other/"))
    steps = [{"name": "crawl", "action": "crawl", "on_error": "retry", "config": {"initial_backoff": "10ms"}}]
    await define(stack, {"id": "partial", "sources": ["steady", "flaky"], "steps": steps})
    execution = await wait_for(stack, (await execute(stack, "partial"))["execution_id"])
    assert execution["status"] == "completed"
    listed = await jobs(stack, execution_id=execution["id"])
    per_source = sorted((j["source_id"], j["metadata"]["attempt"]) for j in listed)
    assert per_source == [("flaky", 1), ("flaky", 2), ("steady", 1)]
    assert site.hits["/"] == 1  # the steady source was crawled once


async def test_source_fetch_failure_fails_the_step(stack: Stack, site: LocalSite) -> None:
    """Go executor items 4 and 13: a source that vanished before its step ran."""
    slow = small_site(2)
    slow.delay = 0.5
    await add_source(stack, "vanishing", site.url())
    async with slow.serve():
        steps = [crawl_step(slow.url(), concurrency=1), {"name": "crawl-source", "action": "crawl"}]
        await define(stack, {"id": "vanish", "sources": ["vanishing"], "steps": steps})
        execution_id = (await execute(stack, "vanish"))["execution_id"]
        await asyncio.sleep(0.3)
        assert (await stack.http.delete("/api/sources/vanishing")).status_code == 204
        execution = await wait_for(stack, execution_id)
    assert execution["status"] == "failed"
    assert "failed to fetch sources: source 'vanishing' not found" in execution["steps"][1]["error"]


async def test_disabled_sources_are_not_crawled(stack: Stack, site: LocalSite) -> None:
    """Crawl action item 2: no (enabled) sources -> the step fails with a clear error."""
    await add_source(stack, "paused", site.url(), enabled=False)
    await define(stack, {"id": "nothing", "sources": ["paused"], "steps": [{"name": "crawl", "action": "crawl"}]})
    execution = await wait_for(stack, (await execute(stack, "nothing"))["execution_id"])
    assert execution["status"] == "failed"
    assert "source" in execution["steps"][0]["error"]
    assert await jobs(stack) == []


async def test_unreachable_site_fails_the_execution(stack: Stack) -> None:
    """Crawl action item 3: a crawl that cannot start pages fails the step (on_error fail)."""
    await define(stack, {"id": "down", "steps": [crawl_step("http://127.0.0.1:9/")]})
    execution = await wait_for(stack, (await execute(stack, "down"))["execution_id"], timeout=120)
    assert execution["status"] == "failed"
    [job] = await jobs(stack)
    assert job["status"] == "failed"


# ------------------------------------------------------------------- timeouts, cancellation


async def test_timeout_is_enforced(stack: Stack) -> None:
    """Go bug 20: timeouts were never enforced. The crawl is cancelled, the execution fails."""
    slow = small_site(8)
    slow.delay = 0.5
    async with slow.serve():
        await define(
            stack, {"id": "slowpoke", "timeout": "1s", "steps": [crawl_step(slow.url(), concurrency=1), REINDEX]}
        )
        execution = await wait_for(stack, (await execute(stack, "slowpoke"))["execution_id"])
    assert execution["status"] == "failed"
    assert execution["error"] == {"code": "timeout", "message": "execution timed out after 1s"}
    [job] = await jobs(stack, execution_id=execution["id"])
    assert job["status"] == "cancelled"
    assert [s["status"] for s in execution["steps"]] == ["failed", "cancelled"]


async def test_cancel_cascades_to_crawl_jobs(stack: Stack) -> None:
    slow = small_site(8)
    slow.delay = 0.5
    async with slow.serve():
        await define(stack, {"id": "stopme", "steps": [crawl_step(slow.url(), concurrency=1)]})
        execution_id = (await execute(stack, "stopme"))["execution_id"]
        await wait_until(lambda: _has_jobs(stack, execution_id))
        cancelled = await stack.http.post(f"/api/executions/{execution_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        [job] = await jobs(stack, execution_id=execution_id)
        await wait_until(lambda: _job_status(stack, job["id"], "cancelled"))
        again = await stack.http.post(f"/api/executions/{execution_id}/cancel")
        assert again.status_code == 409
    history = [t for t, _ in await events(stack, execution_id)]
    assert history.count("cancelled") == 1 and "completed" not in history and "failed" not in history


async def _has_jobs(stack: Stack, execution_id: str) -> bool:
    return bool(await jobs(stack, execution_id=execution_id))


async def test_cancel_right_after_execute(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Go executor item 9: an execution cancelled as soon as it started ends cancelled, and so
    does any crawl job its first step had already created."""
    caplog.set_level(logging.INFO, logger="services.executor.runner")
    site = LocalSite()
    site.add("/", "Home", ["/a.html"])
    site.close()  # the crawl cannot finish before the cancel lands
    async with site.serve():
        await define(stack, {"id": "never", "steps": [crawl_step(site.url(), concurrency=1)]})
        execution_id = (await execute(stack, "never"))["execution_id"]
        cancelled = await stack.http.post(f"/api/executions/{execution_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        # Settled: the driver has stopped (a StepCall in flight has created its job or never
        # will), then the crawler cancelled whatever the execution had.
        await wait_until(lambda: _crawl_jobs_cancelled(caplog, execution_id))
        listed = await jobs(stack, execution_id=execution_id)
        assert len(listed) <= 1
        assert [j["status"] for j in listed if j["status"] in ("running", "completed")] == []
        assert (await get_execution(stack, execution_id))["status"] == "cancelled"
        site.open()


async def _crawl_jobs_cancelled(caplog: pytest.LogCaptureFixture, execution_id: str) -> bool:
    return any(
        r.getMessage() == "crawl jobs cancelled" and getattr(r, "execution_id", "") == execution_id
        for r in caplog.records
    )


async def test_a_dropped_watcher_does_not_stop_the_execution(stack: Stack) -> None:
    """Go executor item 17: the caller going away is not a cancellation."""
    slow = small_site(3)
    slow.delay = 0.3
    async with slow.serve():
        await define(stack, {"id": "detached", "steps": [crawl_step(slow.url(), concurrency=1)]})
        execution_id = (await execute(stack, "detached"))["execution_id"]
        call = stack.executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id))
        await call.read()
        await asyncio.sleep(0.5)
        call.cancel()
        execution = await wait_for(stack, execution_id)
    assert execution["status"] == "completed"


async def test_watch_streams_until_terminal(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "watched", "steps": [crawl_step(site.url())]})
    execution_id = (await execute(stack, "watched"))["execution_id"]
    seen = [m.event.type async for m in stack.executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id))]
    assert seen[0] == "snapshot" and seen[-1] == "completed"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stack.executor.WatchExecution(ex.WatchExecutionRequest(id="nope")):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sse_resumes_after_last_event_id(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "sse", "steps": [crawl_step(site.url())]})
    execution_id = (await execute(stack, "sse"))["execution_id"]
    await wait_for(stack, execution_id)
    history = await events(stack, execution_id)
    frames = await _sse(stack, f"/api/executions/{execution_id}/events", {"Last-Event-ID": "0"})
    assert frames[0][1] == "snapshot" and frames[0][2]["execution"]["status"] == "completed"
    first_id = frames[0][0]
    middle = (await _sse_ids(stack, execution_id))[2]
    resumed = await _sse(stack, f"/api/executions/{execution_id}/events", {"Last-Event-ID": str(middle)})
    assert [f[1] for f in resumed] == [t for t, _ in history][3:]
    assert all(f[0] > middle for f in resumed) and first_id >= resumed[-1][0]
    missing = await stack.http.get("/api/executions/nope/events")
    assert missing.status_code == 404


async def _sse_ids(stack: Stack, execution_id: str) -> list[int]:
    return [
        m.event.id async for m in stack.executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id, replay=True))
    ]


async def _sse(stack: Stack, path: str, headers: dict[str, str]) -> list[tuple[int, str, dict[str, Any]]]:
    import json

    frames = []
    async with stack.http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "event" in current:
                    frames.append((int(current["id"]), current["event"], json.loads(current["data"])))
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            current[key] = value
    return frames


async def test_list_executions_filters(stack: Stack, site: LocalSite) -> None:
    await define(stack, {"id": "a", "steps": [crawl_step(site.url())]})
    await define(stack, {"id": "b", "steps": [crawl_step(site.url("/missing"))]})
    for definition in ("a", "b"):
        await wait_for(stack, (await execute(stack, definition))["execution_id"])
    failed = (await stack.http.get("/api/executions", params={"status": "failed"})).json()
    assert [e["job_definition_id"] for e in failed["executions"]] == ["b"] and failed["total_count"] == 1
    by_definition = (await stack.http.get("/api/executions", params={"job_definition_id": "a"})).json()
    assert by_definition["total_count"] == 1
    assert (await stack.http.get("/api/executions", params={"status": "bogus"})).status_code == 400
    assert (await stack.http.get("/api/executions/nope")).status_code == 404
    assert (await get_execution(stack, failed["executions"][0]["id"]))["parent_execution_id"] is None
