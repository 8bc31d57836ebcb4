"""The step runner: drives executions, streaming each step to the crawler over RunSteps.

One stream per execution. A step is sent as a StepCall and answered with accepted, progress and
finished events. A broken stream is reopened and the same StepCall (same attempt) sent again: the
crawler answers with the crawl jobs it already created, so nothing is crawled twice. Every state
change is recorded in the ledger as a compare-and-set by the owning instance; when the CAS fails
(cancelled, or the lease went to another instance) the runner stops driving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import SQLAlchemyError

from libs.db import utcnow
from libs.logs import log_context
from libs.proto_json import enum_to_str, struct_to_dict
from libs.step_config import PARENT_CRAWL_JOB_IDS, RetryPolicy, parse_retry_policy
from quaero.v1 import crawl_job_pb2, crawler_service_pb2, crawler_service_pb2_grpc
from services.executor.convert import source_to_proto, step_to_proto
from services.executor.definitions import Source, Step
from services.executor.ledger import Ledger
from services.executor.model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    POST_PENDING,
    RETRYING,
    RUNNING,
    Execution,
    StepState,
)
from services.executor.store import ExecutorStore

log = logging.getLogger(__name__)
T = TypeVar("T")

_JOB_STATUS = crawl_job_pb2.CrawlJobStatus.DESCRIPTOR
# Stream failures worth reopening the stream for; anything else is the step's error.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
PROGRESS_INTERVAL = 1.0


class LostExecution(Exception):
    """The execution is no longer ours to drive (cancelled, or its lease was taken)."""


class StepFailed(Exception):
    def __init__(self, message: str, *, stream_error: bool = False) -> None:
        super().__init__(message)
        self.stream_error = stream_error


def job_summary(job: crawler_service_pb2.StepCrawlJob, source_types: dict[str, str]) -> dict[str, Any]:
    """A crawl job as it appears in execution events (the Go system's job_progress keys)."""
    p = job.progress
    return {
        "crawl_job_id": job.crawl_job_id,
        "source_id": job.source_id,
        "source_type": source_types.get(job.source_id, "web"),
        "status": enum_to_str(_JOB_STATUS, job.status) or "",
        "total_urls": p.total_urls,
        "completed_urls": p.completed_urls,
        "failed_urls": p.failed_urls,
        "pending_urls": p.pending_urls,
        "skipped_urls": p.skipped_urls,
        "percentage": round(p.percentage, 2),
        "error": job.error,
    }


def note_changes(step: StepState, jobs: Any) -> bool:
    """Keep what each crawl job reports it found; True when that changed anything stored."""
    noted = False
    for job in jobs:
        if not job.HasField("changes"):
            continue
        c = job.changes
        counts = {"new": c.new, "changed": c.changed, "unchanged": c.unchanged, "removed": c.removed}
        if step.changes.get(job.crawl_job_id) != counts:
            step.changes[job.crawl_job_id] = counts
            noted = True
    return noted


class StepStream:
    """The RunSteps stream of one execution, reopened (and the step replayed) when it breaks."""

    def __init__(self, stub: crawler_service_pb2_grpc.CrawlerServiceStub, execution_id: str) -> None:
        self._stub = stub
        self._execution_id = execution_id
        self._call: Any = None

    def abort(self) -> None:
        """Cancel the stream at once: the step in flight is abandoned (cancelled, timed out, lost,
        shutting down). No crawl job is touched."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def close(self) -> None:
        """Half-close and let the crawler end the stream (cheaper for both sides than a cancel);
        cancel if it does not end promptly. Either way no crawl job is touched."""
        call, self._call = self._call, None
        if call is None:
            return
        try:
            async with asyncio.timeout(5):
                await call.done_writing()
                while await call.read() is not grpc.aio.EOF:
                    pass
        except (TimeoutError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            call.cancel()

    async def run(
        self,
        call: crawler_service_pb2.StepCall,
        on_event: Callable[[crawler_service_pb2.StepEvent], Awaitable[None]],
    ) -> crawler_service_pb2.StepFinished:
        delay, internal_failures = 0.2, 0
        while True:
            try:
                if self._call is None:
                    self._call = self._stub.RunSteps()
                await self._call.write(crawler_service_pb2.RunStepsRequest(call=call))
                while True:
                    response = await self._call.read()
                    if response is grpc.aio.EOF:
                        raise StepFailed("the crawler closed the step stream", stream_error=True)
                    event = response.event
                    if (event.step_index, event.attempt) != (call.step_index, call.attempt):
                        continue  # a late event of an earlier step or replay
                    await on_event(event)
                    if event.HasField("finished"):
                        return event.finished
            except (grpc.aio.AioRpcError, StepFailed) as exc:
                code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNAVAILABLE
                message = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                await self.close()
                if code == grpc.StatusCode.INTERNAL:
                    internal_failures += 1
                if code not in _TRANSIENT or internal_failures > 5:
                    raise StepFailed(f"crawler refused the step: {message}") from exc
                log.warning(
                    "step stream broke; reopening it and replaying the step",
                    extra={"code": code.name, "step_index": call.step_index, "attempt": call.attempt},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class Runner:
    """Drives the executions this instance owns, each in its own task."""

    def __init__(
        self,
        ledger: Ledger,
        store: ExecutorStore,
        crawler: crawler_service_pb2_grpc.CrawlerServiceStub,
        *,
        owner: str,
        lease_seconds: float,
        trigger_post_jobs: Callable[[str], Awaitable[None]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cancel_retry_for: float = 300.0,
        cancel_backoff: tuple[float, float] = (0.5, 30.0),
        cancel_confirmed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`cancel_retry_for`: how long to keep asking an unreachable crawler to cancel crawl jobs,
        `cancel_backoff`: the first and the longest pause between those attempts (seconds)."""
        self.ledger = ledger
        self.store = store
        self.crawler = crawler
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.trigger_post_jobs = trigger_post_jobs
        self._sleep = sleep
        self._cancel_retry_for = cancel_retry_for
        self._cancel_backoff = cancel_backoff
        # Told when the crawler confirmed an execution's cancel (the durable cancel is then done).
        self._cancel_confirmed = cancel_confirmed
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._deferred: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    @property
    def driving(self) -> list[str]:
        return list(self._tasks)

    def start(self, execution: Execution) -> bool:
        """Drive `execution` (already claimed by this owner) in the background. False once the
        runner is closed (shutting down): the caller gives the lease back."""
        if self._closed:
            return False
        if execution.id not in self._tasks:
            task = asyncio.create_task(self._drive(execution), name=f"execution-{execution.id}")
            self._tasks[execution.id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(execution.id, None))
        return True

    async def stop(self, execution_id: str) -> None:
        """Stop driving one execution here (it was cancelled, or its lease moved)."""
        task = self._tasks.get(execution_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> list[str]:
        """Shutdown: start nothing more, stop every task, and wait for the ledger writes they
        began, so what they did is recorded before the database closes. Returns the ids that
        were being driven (their state is in the ledger: another owner resumes from there)."""
        self._closed = True
        ids = list(self._tasks)
        for task in [*self._tasks.values(), *self._cleanups]:
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._cleanups, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)
        return ids

    async def _write(self, write: Awaitable[T]) -> T:
        """Let a ledger write run to its end even if the driver is cancelled meanwhile: cancelling
        SQLAlchemy mid-statement breaks the connection's cleanup, and a late write is harmless (every
        write is a compare-and-set). close() waits for the writes still running."""
        future = asyncio.ensure_future(write)
        self._writes.add(future)
        future.add_done_callback(self._written)
        return await asyncio.shield(future)

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # Its driver sees the error, unless it was cancelled meanwhile: then it ends here.
            log.debug("ledger write failed", exc_info=future.exception())

    async def _drive(self, execution: Execution) -> None:
        with log_context(execution_id=execution.id, job_definition_id=execution.job_definition_id):
            try:
                await self._run(execution)
            except LostExecution:
                await self._after_loss(execution.id)
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, OSError):
                # The ledger away (a lost connection): nothing about the execution is wrong, and
                # the orphan pass resumes it once its lease lapses.
                log.exception("execution driver failed; another pass will resume it")
            except Exception as exc:
                # A fault of the executor itself would fail again on every resume: the execution
                # fails, saying so, instead of staying running for ever.
                log.exception("execution driver failed; the execution fails")
                with contextlib.suppress(Exception):
                    await self._fail(execution, "internal", f"the executor failed driving it: {type(exc).__name__}")
            finally:
                self._deferred.pop(execution.id, None)

    async def _after_loss(self, execution_id: str) -> None:
        """If it was cancelled while a step was starting, make sure its crawl jobs stop too."""
        current = await self.ledger.get(execution_id)
        if current.status == CANCELLED:
            self.cancel_crawl_jobs(execution_id, "cancelled")
        log.info("stopped driving execution", extra={"status": current.status})

    def cancel_crawl_jobs(self, execution_id: str, reason: str, *, stop_driver: bool = False) -> asyncio.Task[None]:
        """Have the crawler cancel the execution's crawl jobs, in the background: returns at once.

        An unreachable crawler is asked again with exponential backoff for `cancel_retry_for`
        seconds; then an error is logged. With `stop_driver`, this instance's driver of the
        execution is stopped first, so a crawl job its last StepCall created is cancelled too."""
        task = asyncio.create_task(
            self._cancel_crawl_jobs(execution_id, reason, stop_driver), name=f"cancel-crawl-jobs-{execution_id}"
        )
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def _cancel_crawl_jobs(self, execution_id: str, reason: str, stop_driver: bool) -> None:
        fields: dict[str, Any] = {"execution_id": execution_id, "reason": reason}
        request = crawler_service_pb2.CancelCrawlJobsRequest(execution_id=execution_id, reason=reason)
        delay, longest = self._cancel_backoff
        attempts = 0
        try:
            if stop_driver:
                await self.stop(execution_id)
            give_up_at = time.monotonic() + self._cancel_retry_for
            while True:
                attempts += 1
                try:
                    response = await self.crawler.CancelCrawlJobs(request, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    fields.update(code=exc.code().name, attempts=attempts)
                    if exc.code() not in _TRANSIENT or time.monotonic() + delay > give_up_at:
                        # The ledger's durable cancel goes on asking (services/executor/cancels.py).
                        log.warning("left cancelling the execution's crawl jobs to the durable cancels", extra=fields)
                        return
                    log.warning("could not cancel crawl jobs yet; retrying", extra={**fields, "delay": delay})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, longest)
                    continue
                log.info("crawl jobs cancelled", extra={**fields, "crawl_job_ids": list(response.cancelled_job_ids)})
                if self._cancel_confirmed is not None:
                    with contextlib.suppress(Exception):
                        await self._cancel_confirmed(execution_id)
                return
        except asyncio.CancelledError:
            log.error("shutting down before the execution's crawl jobs were cancelled", extra=fields)
            raise

    # ------------------------------------------------------------------------- one run

    async def _run(self, execution: Execution) -> None:
        if execution.status == RUNNING and execution.post_jobs_state == POST_PENDING:
            await self._post_jobs(execution)
            return
        stream = StepStream(self.crawler, execution.id)
        try:
            errors = await self._steps_within_deadline(execution, stream)
        except BaseException:
            stream.abort()  # stopped, lost or broken: no point waiting for the step in flight
            raise
        finally:
            await stream.close()
        if errors is None:
            return  # finished already (failed, or timed out)
        if errors:
            message = f"{len(errors)} error(s): " + "; ".join(errors)
            if await self._fail(execution, "step_failed", message):
                log.warning("execution failed", extra={"error": message})
            return
        if not await self._write(self.ledger.succeed(execution, self.owner, events=self._unsaved(execution))):
            raise LostExecution
        execution.post_jobs_state = POST_PENDING if execution.post_jobs else execution.post_jobs_state
        if execution.post_jobs:
            await self._post_jobs(execution)
        else:
            log.info("execution completed")

    async def _post_jobs(self, execution: Execution) -> None:
        """Ask TriggerPostJobs (over gRPC, at our advertised address) until the outcomes are recorded."""
        delay = 0.2
        for _ in range(8):
            try:
                await self.trigger_post_jobs(execution.id)
                log.info("execution completed; post-jobs triggered")
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return  # cancelled meanwhile: never after cancellation
                log.warning("TriggerPostJobs failed; retrying", extra={"code": exc.code().name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        # The recovery loop takes it from here once the lease lapses.
        await self._write(self.ledger.release(self.owner, [execution.id]))

    async def _steps_within_deadline(self, execution: Execution, stream: StepStream) -> list[str] | None:
        """Run the remaining steps; None when the execution already ended (failed or timed out)."""
        if execution.deadline is None:
            return await self._steps(execution, stream)
        remaining = (execution.deadline - utcnow()).total_seconds()
        try:
            async with asyncio.timeout(max(remaining, 0)):
                return await self._steps(execution, stream)
        except TimeoutError:
            stream.abort()
            await self._time_out(execution)
            return None

    async def _time_out(self, execution: Execution) -> None:
        timeout = execution.definition.get("timeout", "")
        self.cancel_crawl_jobs(execution.id, "timeout")
        for step in execution.steps:
            if step.status == RUNNING:
                step.status, step.error = FAILED, f"timed out after {timeout}"
        message = f"execution timed out after {timeout}"
        if await self._fail(execution, "timeout", message):
            log.warning("execution timed out", extra={"timeout": timeout})

    async def _steps(self, execution: Execution, stream: StepStream) -> list[str] | None:
        errors: list[str] = []
        definitions = execution.definition["steps"]
        for step in execution.steps:
            if step.status == COMPLETED:
                continue
            if step.status == FAILED:  # recorded by an earlier pass with on_error=continue
                errors.append(f"step {step.index} ({step.name}): {step.error}")
                continue
            spec = definitions[step.index]
            if await self._run_step(execution, step, spec, stream):
                continue
            error = f"step {step.index} ({step.name}): {step.error}"
            if spec.get("on_error", "fail") == "continue":
                errors.append(error)
                continue
            message = f"execution failed at {error}"
            if await self._fail(execution, "step_failed", message):
                log.warning("execution failed", extra={"step_index": step.index, "error": step.error})
                return None
            raise LostExecution
        return errors

    # Events of writes that can wait: a step's completion travels with the next step's start or
    # with the final status. Losing it in a crash is harmless: the step is then replayed, and the
    # crawler answers a replayed StepCall with what it already did.

    def _defer(self, execution: Execution, events: list[tuple[str, dict[str, Any]]]) -> None:
        self._deferred.setdefault(execution.id, []).extend(events)

    def _unsaved(self, execution: Execution) -> list[tuple[str, dict[str, Any]]]:
        return self._deferred.pop(execution.id, [])

    async def _fail(self, execution: Execution, code: str, message: str) -> bool:
        """Record the execution as failed, with its deferred events; False when it was no longer ours."""
        return await self._write(
            self.ledger.finish(execution, self.owner, FAILED, code, message, events=self._unsaved(execution))
        )

    async def _save(self, execution: Execution, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Record the steps now (with any deferred events); the first write also starts the run."""
        start = execution.status == PENDING
        if not await self._write(
            self.ledger.save_steps(execution, self.owner, self._unsaved(execution) + events, start=start)
        ):
            raise LostExecution
        execution.status = RUNNING

    async def _run_step(self, execution: Execution, step: StepState, spec: dict[str, Any], stream: StepStream) -> bool:
        """Run one step to success or final failure (retries included); True on success."""
        config = dict(spec.get("config") or {})
        on_error = spec.get("on_error", "fail")
        policy, _ = parse_retry_policy(config)
        if on_error != "retry":
            policy = RetryPolicy(max_retries=0)
        while True:
            # A step recorded as running was interrupted: send the same attempt again (a replay).
            replay = step.status == RUNNING and step.attempts > 0
            attempt = step.attempts if replay else step.attempts + 1
            step.status, step.attempts, step.error = RUNNING, attempt, ""
            if not replay:  # a replay's state is recorded already
                started = {"step_index": step.index, "name": step.name, "action": step.action, "attempt": attempt}
                await self._save(execution, [("step_started", started)])
            source_types: dict[str, str] = {}
            try:
                finished = await self._call_step(execution, step, spec, attempt, stream, source_types)
                ok, error = finished.ok, finished.error or "step failed"
            except StepFailed as exc:
                finished, ok, error = None, False, str(exc)
            jobs = [job_summary(j, source_types) for j in (finished.jobs if finished else [])]
            if finished is not None:
                note_changes(step, finished.jobs)
            if ok:
                step.status, step.failed_sources = COMPLETED, []
                payload = {"step_index": step.index, "attempt": attempt, "jobs": jobs}
                if finished is not None and finished.HasField("result"):
                    payload["result"] = struct_to_dict(finished.result)  # e.g. corpus_summary's document_id
                self._defer(execution, [("step_completed", payload)])
                return True
            step.error = error
            step.failed_sources = sorted({j["source_id"] for j in jobs if j["status"] != "completed"})
            retry = attempt - 1 < policy.max_retries
            events: list[tuple[str, dict[str, Any]]] = [
                (
                    "step_failed",
                    {"step_index": step.index, "attempt": attempt, "error": error, "jobs": jobs, "final": not retry},
                )
            ]
            if not retry:
                step.status = FAILED
                if attempt > 1:
                    step.error = f"failed after {attempt - 1} retries: {error}"
                self._defer(execution, events)
                return False
            delay = policy.delay(attempt)
            events.append(
                ("step_retry", {"step_index": step.index, "next_attempt": attempt + 1, "delay_seconds": delay})
            )
            step.status = RETRYING
            await self._save(execution, events)
            log.info(
                "step failed; retrying",
                extra={"step_index": step.index, "attempt": attempt, "delay": delay, "error": error},
            )
            await self._sleep(delay)

    async def _call_step(
        self,
        execution: Execution,
        step: StepState,
        spec: dict[str, Any],
        attempt: int,
        stream: StepStream,
        source_types: dict[str, str],
    ) -> crawler_service_pb2.StepFinished:
        sources = await self._sources_for(execution, step, spec, attempt)
        config = dict(spec.get("config") or {})
        if spec["action"] != "crawl" and config.get("documents") == "parent_changes":
            # What the crawler needs to find the parent's new and changed documents.
            config[PARENT_CRAWL_JOB_IDS] = list(execution.parent_crawl_job_ids)
        call = crawler_service_pb2.StepCall(
            execution_id=execution.id,
            job_definition_id=execution.job_definition_id,
            step_index=step.index,
            attempt=attempt,
            step=step_to_proto(Step(spec["name"], spec["action"], config, spec.get("on_error", "fail"))),
            sources=[source_to_proto(s, with_auth=True) for s in sources],
        )
        source_types.update({s.id: s.type for s in sources})
        last_progress = 0.0

        async def on_event(event: crawler_service_pb2.StepEvent) -> None:
            nonlocal last_progress
            if event.HasField("accepted") and event.accepted.jobs:
                ids = [j.crawl_job_id for j in event.accepted.jobs]
                step.crawl_job_ids.extend(i for i in ids if i not in step.crawl_job_ids)
                payload = {"step_index": step.index, "attempt": attempt, "crawl_job_ids": ids,
                           "jobs": [job_summary(j, source_types) for j in event.accepted.jobs]}  # fmt: skip
                await self._save(execution, [("step_accepted", payload)])
            elif event.HasField("progress"):
                now = time.monotonic()
                if now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    payload = {"step_index": step.index, "attempt": attempt,
                               "jobs": [job_summary(j, source_types) for j in event.progress.jobs]}  # fmt: skip
                    if not await self._write(self.ledger.record_progress(execution.id, self.owner, payload)):
                        raise LostExecution

        return await stream.run(call, on_event)

    async def _sources_for(
        self, execution: Execution, step: StepState, spec: dict[str, Any], attempt: int
    ) -> list[Source]:
        """The definition's sources, fetched fresh; a retry sends only those whose job failed.

        A crawl of sources fails when one is missing; other actions get the ones that exist."""
        if spec["action"] != "crawl":
            return []  # other actions name what they work on in their config
        ids: list[str] = list(execution.definition.get("sources", []))
        if attempt > 1 and step.failed_sources:
            ids = [i for i in ids if i in step.failed_sources]
        found = await self.store.find_sources(ids)
        missing = [i for i in ids if i not in found]
        if missing and not (spec.get("config") or {}).get("start_urls"):
            raise StepFailed(f"failed to fetch sources: source {missing[0]!r} not found")
        return [found[i] for i in ids if i in found]
