"""The `crawl` action: one crawl job per source (or start_urls list), then its progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from libs.amqp import TaskQueue
from libs.db import Database
from libs.errors import FieldViolation, InvalidArgument
from libs.logs import current_request_id
from libs.proto_json import enum_to_str, struct_to_dict, to_dict
from libs.step_config import CRAWL_OPTIONS, check_http_url, check_step_config
from quaero.v1 import crawl_job_pb2, crawler_service_pb2, source_pb2
from services.crawler import queue as tasks_queue
from services.crawler.frontier import canonical_url
from services.crawler.messages import step_job
from services.crawler.store import COMPLETED, TERMINAL, CrawlJobRow, CrawlStore, Created, JobSpec, job_channel

DEFAULTS: dict[str, Any] = {
    "max_depth": 2,
    "max_pages": 1000,
    "include_patterns": [],
    "exclude_patterns": [],
    "allowed_domains": [],
    "allow_subdomains": False,
    "follow_links": True,
    "concurrency": 16,
    "rate_limit": 0,
    "obey_robots": True,
    "sitemap": "include",
    "render": "auto",
    "wait_for": "",
}
_SOURCE_TYPE = source_pb2.SourceType.DESCRIPTOR
_CONFIG_FIELDS = crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields
_SCALARS = [f.name for f in _CONFIG_FIELDS if not f.is_repeated]
_LISTS = [f.name for f in _CONFIG_FIELDS if f.is_repeated]
_NUMBERS = [f.name for f in _CONFIG_FIELDS if f.type in (f.TYPE_INT32, f.TYPE_INT64)]
PROGRESS_INTERVAL = 0.5
# Watchers re-read the jobs at least this often, whatever the notifier says.
RECHECK_INTERVAL = 1.0

Emit = Callable[[crawler_service_pb2.StepEvent], None]


def effective_config(step: dict[str, Any], source: source_pb2.Source | None) -> dict[str, Any]:
    """Built-in defaults, then the source's crawl defaults, then the step's values."""
    config: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    if source is not None:
        crawl = source.crawl
        config.update({name: getattr(crawl, name) for name in _SCALARS if crawl.HasField(name)})
        config.update({name: list(getattr(crawl, name)) for name in _LISTS if getattr(crawl, name)})
    config.update({k: step[k] for k in CRAWL_OPTIONS if step.get(k) is not None})
    for key in _NUMBERS:
        config[key] = int(config[key])
    return config


def _source_snapshot(source: source_pb2.Source) -> dict[str, Any]:
    """The source as the job saw it, without its credentials."""
    snapshot = to_dict(source, omit=frozenset({"auth", "created_at", "updated_at"}))
    snapshot["type"] = enum_to_str(_SOURCE_TYPE, source.type) or "web"
    return snapshot


def _auth(source: source_pb2.Source) -> dict[str, Any] | None:
    headers, cookies = dict(source.auth.headers), dict(source.auth.cookies)
    return {"headers": headers, "cookies": cookies} if headers or cookies else None


def plan_jobs(call: crawler_service_pb2.StepCall, request_id: str) -> list[JobSpec]:
    """The crawl jobs a step asks for; InvalidArgument naming the field when it cannot run."""
    config = struct_to_dict(call.step.config)
    violations = check_step_config("crawl", config, "config")
    if violations:
        raise InvalidArgument(violations=violations)
    metadata = {
        "job_definition_id": call.job_definition_id,
        "execution_id": call.execution_id,
        "step": call.step_index,
        "attempt": call.attempt,
        "rerun_of": "",
    }
    step_name = call.step.name or "crawl"

    def spec(
        source_key: str, source_type: str, name: str, seeds: list[str], source: source_pb2.Source | None
    ) -> JobSpec:
        return JobSpec(
            name=name,
            source_id=source_key,
            source_type=source_type,
            config=effective_config(config, source),
            source_snapshot=_source_snapshot(source) if source is not None else {},
            auth=_auth(source) if source is not None else None,
            seed_urls=seeds,
            metadata=dict(metadata),
            step_key=f"{call.execution_id}/{call.step_index}/{call.attempt}/{source_key}",
            request_id=request_id,
        )

    if config.get("start_urls"):
        seeds = list(dict.fromkeys(canonical_url(u) or u for u in config["start_urls"]))
        key = f"adhoc:{call.job_definition_id}"
        return [spec(key, "web", f"{step_name}: start_urls", seeds, None)]

    enabled = [(i, s) for i, s in enumerate(call.sources) if not s.HasField("enabled") or s.enabled]
    if not call.sources:
        raise InvalidArgument.field("sources", "the crawl step has no start_urls and the definition has no sources")
    if not enabled:
        raise InvalidArgument.field("sources", "every source of the crawl step is disabled")
    specs, problems = [], []
    for i, source in enabled:
        problem = check_http_url(source.base_url)
        if problem or not source.id:
            problems.append(
                FieldViolation(f"sources[{i}].base_url" if problem else f"sources[{i}].id", problem or "is required")
            )
            continue
        seed = canonical_url(source.base_url) or source.base_url
        source_type = enum_to_str(_SOURCE_TYPE, source.type) or "web"
        specs.append(spec(source.id, source_type, f"{step_name}: {source.name or source.id}", [seed], source))
    if problems:
        raise InvalidArgument(violations=problems)
    return specs


class CrawlAction:
    def __init__(self, db: Database, store: CrawlStore, queue: TaskQueue) -> None:
        self.db = db
        self.store = store
        self.queue = queue

    async def run(self, call: crawler_service_pb2.StepCall, emit: Emit) -> None:
        def event(**kind: Any) -> None:
            emit(
                crawler_service_pb2.StepEvent(
                    execution_id=call.execution_id, step_index=call.step_index, attempt=call.attempt, **kind
                )
            )

        try:
            specs = plan_jobs(call, current_request_id() or "")
        except InvalidArgument as exc:
            event(finished=crawler_service_pb2.StepFinished(ok=False, error=exc.message))
            return
        # Shielded: a stream closed (or a server stopping) while the jobs are being created must
        # not roll them back halfway, nor leave them created with their first tasks unpublished.
        created = await asyncio.shield(self._start(specs))
        jobs = created.jobs
        if created.cancelled is not None:
            error = f"execution {call.execution_id} was cancelled ({created.cancelled}): no crawl job started"
            event(finished=crawler_service_pb2.StepFinished(ok=False, error=error, jobs=[step_job(j) for j in jobs]))
            return
        event(accepted=crawler_service_pb2.StepAccepted(jobs=[step_job(j) for j in jobs]))
        config = struct_to_dict(call.step.config)
        if config.get("wait_for_completion") is False:
            event(finished=crawler_service_pb2.StepFinished(ok=True, jobs=[step_job(j) for j in jobs]))
            return
        final = await self.watch(
            [j.id for j in jobs],
            lambda js: event(progress=crawler_service_pb2.StepProgress(jobs=[step_job(j) for j in js])),
        )
        failures = [j for j in final if j.status != COMPLETED]
        error = "; ".join(
            f"crawl job {j.id} ({j.source_id}) {j.status}" + (f": {j.error}" if j.error else "") for j in failures
        )
        event(
            finished=crawler_service_pb2.StepFinished(ok=not failures, error=error, jobs=[step_job(j) for j in final])
        )

    async def _start(self, specs: list[JobSpec]) -> Created:
        created = await self.store.create_jobs(specs)
        await tasks_queue.publish(self.queue, created.tasks, give_back=self.db)
        return created

    async def watch(self, job_ids: list[str], on_progress: Callable[[list[CrawlJobRow]], None]) -> list[CrawlJobRow]:
        """Report the jobs' counters as they change (at most every PROGRESS_INTERVAL) until
        every job is terminal; returns their final state."""
        last: tuple[Any, ...] | None = None
        last_sent = 0.0
        async with contextlib.AsyncExitStack() as stack:
            wakers = [await stack.enter_async_context(self.db.notifier.subscribe(job_channel(i))) for i in job_ids]
            while True:
                for waker in wakers:
                    waker.clear()
                jobs = await self.store.get_jobs(job_ids)
                if all(j.status in TERMINAL for j in jobs):
                    return jobs
                state = tuple((j.status, j.completed_urls, j.total_urls, j.skipped_urls) for j in jobs)
                wait = RECHECK_INTERVAL
                if state != last:
                    since = time.monotonic() - last_sent
                    if since >= PROGRESS_INTERVAL:
                        on_progress(jobs)
                        last, last_sent = state, time.monotonic()
                    else:
                        wait = PROGRESS_INTERVAL - since
                waiters = [asyncio.ensure_future(w.wait()) for w in wakers]
                try:
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
