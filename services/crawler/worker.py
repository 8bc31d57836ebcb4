"""Crawl workers: consume URL tasks, fetch and parse pages, settle them, publish what they found.

A worker is a pipeline of three stages joined by in-memory queues:
- the gate takes deliveries as they come and checks them against the database in batches (a
  task for a settled URL or a job that is not running is acked at once, never fetched);
- one asyncio task per delivery fetches and parses its page into an `Outcome`;
- the settler takes every outcome ready, settles them per job in one transaction, acks the
  deliveries, and publishes the leased tasks with pipelined confirms in the background (the
  job's next settle does not wait for the broker; tasks a publish loses are leased in the
  frontier, and the pump publishes them again).
Stopping is graceful: no more deliveries, the tasks under way finish within the grace period,
and a settle once started always runs to its end.
`python -m services.crawler.worker` runs one; the crawler server runs one in-process in embedded
mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, text

from libs import metrics
from libs.amqp import Consumer, Delivery, RabbitQueue, TaskQueue
from libs.db import Database, utcnow
from libs.fetch_guard import FetchGuard
from libs.grpc_server import run_process
from libs.logs import REQUEST_ID_HEADER, configure_logging, log_context, request_context, service_var
from libs.step_config import origin
from quaero.v1 import url_task_pb2
from services.crawler import queue as tasks_queue
from services.crawler.fetch import Fetcher, FetchResult, Robots, Validators
from services.crawler.frontier import ROBOTS, TOO_LARGE, canonical_link, canonical_url, host_of
from services.crawler.lookups import Lookups
from services.crawler.parse import ParsedPage, Parser
from services.crawler.publishers import Heartbeat
from services.crawler.render import BrowserFetcher, BrowserUnavailable
from services.crawler.settings import CrawlerSettings
from services.crawler.settle import (
    FAILED,
    PAGE,
    REDIRECT,
    RETRY,
    SKIPPED,
    YIELD_EVERY,
    JobContext,
    Outcome,
    Settler,
    Stored,
    UrlRow,
    job_context,
    retrying,
)
from services.crawler.sitemaps import SitemapLimits, sitemap_urls
from services.crawler.store import (
    HOST_SLOTS,
    JOBS,
    PG_SESSION_SETTINGS,
    QUEUED,
    ROBOTS_CACHE,
    RUNNING,
    STATUS_CHANNEL,
    UNCHANGED,
    URLS,
    CrawlStore,
    Html,
    RobotsRow,
    dialect_insert,
    is_database_error,
    keep_html,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
AUTO, ALWAYS = "auto", "always"

# The raw HTML of settled pages is written in batches of this many pages or bytes, or of what
# came within this many seconds; with more writes than this under way, a batch is dropped.
HTML_BATCH_PAGES = 64
HTML_BATCH_BYTES = 8 * 1024 * 1024
HTML_FLUSH_AFTER = 0.25
HTML_WRITES_IN_FLIGHT = 4

# A politeness slot further away than this is not waited for: the URL goes back to the
# frontier with a due time, and the pump publishes it then (no prefetch slot held asleep).
MAX_SLOT_WAIT = 2.0
KNOWN_URLS_PER_JOB = 200_000
JOBS_REMEMBERED = 64
# A job seen running this recently takes new tasks without asking the database again; a cancel
# (or completion) wakes STATUS_CHANNEL and empties the cache at once.
STATUS_TTL = 1.0
# Settle transactions a worker runs at once, for different jobs. One job's settles never run
# side by side in a worker: two transactions of one job wait on each other (its counter row, the
# URLs both discover), so one settle of everything ready beats several small ones (measured:
# 163 -> 270 pages/s with two workers on one job).
SETTLERS = 3
MAX_BATCH = 512
# After a database error a worker waits before giving tasks back to the queue, doubling the wait
# while errors follow each other: requeued at once, a task comes straight back and fails again,
# and a short outage would burn its delivery limit and dead-letter a good URL as poison.
DB_BACKOFF_FIRST = 0.5
DB_BACKOFF_MAX = 10.0
# How long a worker's start-up log waits to say its parse pool has started (benches wait for it:
# the pool's start-up CPU is no crawl's).
POOL_START_TIMEOUT = 120.0
# On shutdown, how long settles already under way may take beyond the grace period.
SETTLE_GRACE = 30.0


_PG_STATES = text(
    "SELECT u.id, u.state, j.status, u.next_attempt_at FROM crawl_urls u JOIN crawl_jobs j ON j.id = u.job_id"
    " WHERE u.id = ANY(CAST(:ids AS bigint[]))"
)


@dataclass
class _Work:
    ctx: JobContext
    outcome: Outcome
    delivery: Delivery


class Worker:
    """One consumer of the URL task queue. Dependencies come in through the constructor."""

    def __init__(
        self,
        db: Database,
        queue: TaskQueue,
        fetcher: Fetcher,
        parser: Parser,
        settings: CrawlerSettings,
        *,
        before_counters: Callable[[str, list[Outcome]], Awaitable[None]] | None = None,
        parse: Callable[[str, bytes, str | None], Awaitable[Any]] | None = None,
        backoff_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        sitemap_limits: SitemapLimits | None = None,
        browser: BrowserFetcher | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.db = db
        # Says this process is alive, so the pump leaves the tasks it leased to it (None: a
        # queue in memory, gone with the process anyway).
        self.heartbeat = heartbeat
        # Renders pages that need JavaScript (None: never rendered, as render: never).
        self.browser = browser
        # Jobs told already that their pages are fetched over HTTP only (no browser here).
        self._warned_no_browser: OrderedDict[str, None] = OrderedDict()
        self.store = CrawlStore(db)
        self.queue = queue
        self.fetcher = fetcher
        self.parser = parser
        self.settings = settings
        self._parse = parse or parser.parse
        self._backoff_sleep = backoff_sleep
        self.sitemap_limits = sitemap_limits or SitemapLimits(timeout=settings.fetch_timeout)
        # Database errors in a row (any stage); a settle that commits resets it.
        self._db_errors = 0
        self._robots: dict[str, tuple[Robots, float]] = {}
        self._robots_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.settler = Settler(
            db,
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff,
            robots_lookup=self._robots_known,
            on_db_error=self._on_db_error,
            before_counters=before_counters,
            versions_kept=settings.document_versions,
            publisher=heartbeat.id if heartbeat is not None else None,
        )
        self.lookups = Lookups(db)
        self._status: dict[str, tuple[str, float]] = {}
        self._contexts: OrderedDict[str, JobContext] = OrderedDict()
        self._loading: dict[str, asyncio.Future[JobContext]] = {}
        self._known: OrderedDict[str, dict[str, int]] = OrderedDict()
        # None tells the gate to stop.
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        # Outcomes waiting to be settled, per job; a job is in `_settling` while a settler has it.
        self._pending: defaultdict[str, list[_Work]] = defaultdict(list)
        self._settling: set[str] = set()
        self._pending_changed = asyncio.Condition()
        self._consumer: Consumer | None = None
        # Fetches under way (one per admitted delivery), and settles under way.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._settles: set[asyncio.Task[None]] = set()
        # Publishes of settled batches' new tasks, confirmed by the broker in the background.
        self._publishes: set[asyncio.Task[bool]] = set()
        self._html_writes: set[asyncio.Task[None]] = set()
        self._html: dict[str, list[Html]] = {}  # by source id, waiting for the next batch
        self._html_pages = 0
        self._html_bytes = 0
        self._html_timer: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Set once the grace period is over: the settle loops end instead of taking more work.
        self._closing = False

    # ------------------------------------------------------------------------------ running

    async def start(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.start()
        self._loops = [
            asyncio.create_task(self._gate(), name="worker-gate"),
            asyncio.create_task(self._watch_statuses(), name="worker-statuses"),
            *(asyncio.create_task(self._settle_loop(), name=f"worker-settler-{i}") for i in range(SETTLERS)),
        ]
        self._consumer = await self.queue.consume(self._on_delivery, prefetch=self.settings.worker_prefetch)

    async def stop(self, grace: float | None = None) -> None:
        """Stop consuming, and let the tasks under way finish within `grace` seconds (the
        shutdown_grace setting by default): their pages are fetched, settled and acked. What has
        not finished by then is left unacked, so it is delivered again (to another worker); a
        settle once started always runs to its end, so no work is left half settled."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self._stopping.set()
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop_receiving()
        self._inbox.put_nowait(None)
        log.info("crawl worker stopping: %d fetch(es) under way get %s s to finish", len(self._tasks), grace)
        try:
            async with asyncio.timeout(grace):
                await self._drain()
        except TimeoutError:
            log.warning(
                "shutdown grace of %s s is over: %d fetch(es) and %d settle(s) unfinished; their tasks will be "
                "delivered again",
                grace,
                len(self._tasks),
                sum(len(w) for w in self._pending.values()) + len(self._settles),
            )
        for task in [*self._loops[:2], *self._tasks]:  # the gate, the status watcher, the fetches
            task.cancel()
        async with self._pending_changed:
            self._closing = True
            self._pending_changed.notify_all()
        # Bounded: a cancellation swallowed somewhere below must not hang the shutdown.
        left = [*self._loops, *self._tasks, *self._settles, *self._publishes, *self._html_writes]
        stuck: set[asyncio.Task[Any]] = set()
        if left:
            _, stuck = await asyncio.wait(left, timeout=max(grace, SETTLE_GRACE))
            if stuck:
                log.error("%d worker task(s) did not stop; leaving them", len(stuck))
        if self.heartbeat is not None:
            await self.heartbeat.stop(all_published=not stuck)
        self._loops.clear()
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.cancel()
            self._consumer = None
        self.parser.close()

    async def _drain(self) -> None:
        """Until every delivery received is fetched, settled and acked (or given back)."""
        if self._loops:
            await asyncio.wait(self._loops[:1])  # the gate admits what it holds, then ends
        await _all_done(self._tasks)
        async with self._pending_changed:
            await self._pending_changed.wait_for(lambda: not self._pending and not self._settling)
        await _all_done(self._publishes)
        self._flush_html()
        await _all_done(self._html_writes)

    async def _on_delivery(self, delivery: Delivery) -> None:
        self._inbox.put_nowait(delivery)

    async def _gate(self) -> None:
        stopping = False
        while not stopping:
            received = [await self._inbox.get()]
            while not self._inbox.empty() and len(received) < 256:
                received.append(self._inbox.get_nowait())
            stopping = None in received
            batch = [d for d in received if d is not None]
            if not batch:
                continue
            try:
                await self._admit(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("checking %d task(s) failed; they will be delivered again", len(batch))
                await self._give_back(batch, exc)

    async def _watch_statuses(self) -> None:
        async with self.db.notifier.subscribe(STATUS_CHANNEL) as wake:
            while True:
                await wake.wait()
                wake.clear()
                self._status.clear()

    async def _admit(self, batch: list[Delivery]) -> None:
        tasks: list[tuple[Delivery, url_task_pb2.UrlTask]] = []
        for delivery in batch:
            try:
                tasks.append((delivery, tasks_queue.decode(delivery.body)))
            except Exception:
                log.error("dropping an unreadable task to the dead-letter queue")
                await _settle_delivery(delivery, requeue=False)
        # First deliveries of a job known to be running go straight to work; the rest (and
        # every job now and then) are checked against the database, in one query per batch.
        clock = time.monotonic()
        checked = [
            t.url_id
            for d, t in tasks
            if d.delivery_count
            or (s := self._status.get(t.job_id)) is None
            or s[0] != RUNNING
            or clock - s[1] > STATUS_TTL
        ]
        states = await self._retrying("checking tasks", lambda: self._states(checked)) if checked else {}
        now = utcnow()
        for delivery, task in tasks:
            state = states.get(task.url_id)
            if task.url_id in states or task.url_id in checked:
                if state is not None:
                    self._status[task.job_id] = (state[1], clock)
                if (
                    state is None
                    or state[0] != QUEUED
                    or state[1] != RUNNING
                    or (state[2] is not None and state[2] > now)
                ):
                    # Settled already, job cancelled or finished, or not due yet: nothing to do.
                    await _settle_delivery(delivery, requeue=False, ack=True)
                    continue
            _track(self._tasks, self._run(delivery, task))

    async def _states(self, url_ids: list[int]) -> dict[int, tuple[str, str, datetime | None]]:
        async with self.db.read() as session:
            if self.db.is_postgres:
                rows = await session.execute(_PG_STATES, {"ids": url_ids})
                return {r.id: (r.state, r.status, r.next_attempt_at) for r in rows}
            rows = await session.execute(
                select(URLS.c.id, URLS.c.state, JOBS.c.status, URLS.c.next_attempt_at)
                .join(JOBS, JOBS.c.id == URLS.c.job_id)
                .where(URLS.c.id.in_(url_ids))
            )
            return {r.id: (r.state, r.status, r.next_attempt_at) for r in rows}

    async def _run(self, delivery: Delivery, task: url_task_pb2.UrlTask) -> None:
        rid = task.request_id or delivery.headers.get(REQUEST_ID_HEADER)
        with request_context(rid if isinstance(rid, str) else None), log_context(job_id=task.job_id):
            try:
                ctx = await self._context(task.job_id)
                if ctx.scope.invalid:
                    await self._fail_job(ctx, delivery)
                    return
                if ctx.render == ALWAYS and (why := self._no_browser()) is not None:
                    await self._fail_job(ctx, delivery, f"render: always needs a browser, and {why}")
                    return
                outcome = await self._process(ctx, task)
                if _is_seed(task) and ctx.sitemap != "skip" and outcome.kind != RETRY and outcome.reason != "cancelled":
                    # Read here, in the seed's task, and admitted in the seed's settle: a worker
                    # that dies before that settles nothing, and the seed's redelivery reads them
                    # again (the frontier's unique keys make a second reading add nothing).
                    outcome.sitemap_links = await self._sitemap_links(ctx, task.url)
                outcome.row = leased_row(task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("processing %s failed; the task goes back to the queue", task.url)
                await self._give_back([delivery], exc)
                return
            async with self._pending_changed:
                self._pending[ctx.id].append(_Work(ctx, outcome, delivery))
                self._pending_changed.notify()

    async def _fail_job(self, ctx: JobContext, delivery: Delivery, why: str = "") -> None:
        """A job this release cannot run (a pattern stored by an older one that RE2 cannot
        run, render: always without a browser) fails, naming why, instead of its tasks going
        round the queue."""
        error = f"{why or ctx.scope.invalid}; correct the definition or source, then run it again"
        if await self.store.fail_job(ctx.id, error):
            log.error("crawl job failed: %s", error)
        await _settle_delivery(delivery, requeue=False, ack=True)

    def _next_batch(self) -> tuple[str, list[_Work]] | None:
        for job_id, works in self._pending.items():
            if works and job_id not in self._settling:
                batch, rest = works[:MAX_BATCH], works[MAX_BATCH:]
                if rest:
                    self._pending[job_id] = rest
                else:
                    del self._pending[job_id]
                self._settling.add(job_id)
                return job_id, batch
        return None

    async def _settle_loop(self) -> None:
        while True:
            async with self._pending_changed:
                await self._pending_changed.wait_for(
                    lambda: self._closing or any(j not in self._settling for j in self._pending)
                )
                if self._closing:
                    return
                job_id, works = self._next_batch() or ("", [])
            if not works:
                continue
            settle = _track(self._settles, self._settle(job_id, works), name=f"worker-settle-{job_id}")
            try:
                # Once started, a settle runs to its end even if this loop is cancelled: a
                # transaction cut short (or committed, its tasks never published nor its
                # deliveries acked) would leave its URLs to the lease timeout.
                await asyncio.shield(settle)
            finally:
                async with self._pending_changed:
                    self._settling.discard(job_id)
                    self._pending_changed.notify_all()

    async def _settle(self, job_id: str, works: list[_Work]) -> None:
        ctx = works[0].ctx
        known = self._known_urls(job_id)
        with request_context(ctx.request_id or None), log_context(job_id=job_id):
            try:
                settled = await self.settler.settle(
                    ctx, [w.outcome for w in works], known, fetched_waiting=lambda: len(self._pending.get(job_id, ()))
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("settling %d URL(s) failed; their tasks go back to the queue", len(works))
                await self._give_back([w.delivery for w in works], exc)
                return
            self._db_errors = 0
            known.update(settled.known)
            if len(known) > KNOWN_URLS_PER_JOB:
                known.clear()
            # The settle is committed: its deliveries are done with, and the job's next settle in
            # this worker need not wait for the broker to confirm the new tasks (a quorum queue
            # confirms once its log is on disk). A publish that fails, or a worker that dies
            # first, leaves the tasks leased in the frontier, and the pump publishes them again.
            await asyncio.gather(*(_settle_delivery(w.delivery, requeue=False, ack=True) for w in works))
            if settled.tasks:
                _track(self._publishes, tasks_queue.publish(self.queue, settled.tasks, give_back=self.db))
            self._buffer_html(ctx, [w.outcome for w in works])

    # -------------------------------------------------------------------------- raw HTML

    def _buffer_html(self, ctx: JobContext, outcomes: list[Outcome]) -> None:
        """Keep the settled pages' raw HTML, for `reextract`: written beside the settles, never
        in their way, a batch at a time (HTML_BATCH_PAGES pages or HTML_BATCH_BYTES, or what
        came within HTML_FLUSH_AFTER seconds). Best effort: a page whose HTML is lost is kept
        from its next fetch."""
        for o in outcomes:
            if o.html is not None and o.kind in (PAGE, UNCHANGED):
                self._html.setdefault(ctx.source_id, []).append(
                    Html(o.url, o.html, o.charset, o.fetched_at, replace=o.kind == PAGE)
                )
                self._html_pages += 1
                self._html_bytes += len(o.html)
        if not self._html_pages:
            return
        if self._html_pages >= HTML_BATCH_PAGES or self._html_bytes >= HTML_BATCH_BYTES:
            self._flush_html()
        elif self._html_timer is None:
            self._html_timer = _track(self._html_writes, self._flush_html_later())

    async def _flush_html_later(self) -> None:
        await asyncio.sleep(HTML_FLUSH_AFTER)
        self._html_timer = None
        self._flush_html()

    def _flush_html(self) -> None:
        buffered, self._html, self._html_pages, self._html_bytes = self._html, {}, 0, 0
        for source_id, pages in buffered.items():
            if len(self._html_writes) > HTML_WRITES_IN_FLIGHT:
                # The database is behind: memory stays bounded, these pages' HTML is not kept.
                log.warning("the HTML of %d page(s) is not kept: earlier writes are still under way", len(pages))
                continue
            _track(self._html_writes, self._write_html(source_id, pages))

    async def _write_html(self, source_id: str, pages: list[Html]) -> None:
        try:
            await keep_html(self.db, source_id, pages)
        except Exception as exc:
            if is_database_error(exc):
                log.warning("keeping the HTML of %d page(s) failed: %s", len(pages), str(exc).splitlines()[0][:200])
            else:
                log.exception("keeping the HTML of %d page(s) failed", len(pages))

    # ----------------------------------------------------------------------------- one task

    async def _process(self, ctx: JobContext, task: url_task_pb2.UrlTask) -> Outcome:
        url = task.url
        if ctx.obey_robots:
            robots = await self._robots_for(url)
            if not robots.allowed(url):
                return Outcome(task.url_id, SKIPPED, url=url, reason=ROBOTS, fetched=False)
            delay = max(ctx.rate_limit_ms / 1000, robots.delay())
        else:
            delay = ctx.rate_limit_ms / 1000
        if delay > 0:
            start = await self._claim_slot(host_of(url), delay)
            if start > time.time() + MAX_SLOT_WAIT:
                return Outcome(task.url_id, RETRY, url=url, reason="politeness", fetched=False, retry_at=_at(start))
            if start > time.time():
                await asyncio.sleep(start - time.time())
                # The job may have been cancelled (or the URL settled) while we waited.
                state = (await self._retrying("checking a task", lambda: self._states([task.url_id]))).get(task.url_id)
                if state is None or state[0] != QUEUED or state[1] != RUNNING:
                    return Outcome(task.url_id, SKIPPED, url=url, reason="cancelled", fetched=False)
        # A recrawl: the page's stored document (if it keeps the page's links, its validators
        # make the request conditional) tells a new page from a changed or an unchanged one. The
        # task carries it, read when the task was leased; from a publisher that read none, it
        # is looked up.
        known, stored = tasks_queue.carried(task)
        if not known and ctx.recrawl:
            stored = await self.lookups.stored(ctx.source_id, url)
        validators = Validators(stored.etag, stored.last_modified) if stored and stored.has_links else None
        fetched_at = utcnow()
        result = await self.fetcher.fetch(url, ctx.auth, validators=validators)
        if result.status == 304 and stored is not None and validators is not None:
            links = await self._stored_links(stored)
            if links is not None:
                return Outcome(
                    task.url_id, UNCHANGED, url=url, http_status=304, fetched_at=fetched_at, links=links, stored=stored
                )
            # The document went away since it was looked up: fetch the page whole.
            result = await self.fetcher.fetch(url, ctx.auth)
        return await self._outcome(ctx, task, url, result, fetched_at, stored)

    async def _stored_links(self, stored: Stored) -> list[str] | None:
        """The links a stored document keeps (None: it keeps none, or is gone)."""
        if not stored.has_links:
            return None
        return stored.links if stored.links is not None else await self.lookups.links(stored.id)

    async def _outcome(
        self,
        ctx: JobContext,
        task: url_task_pb2.UrlTask,
        url: str,
        r: FetchResult,
        fetched_at: datetime,
        stored: Stored | None = None,
    ) -> Outcome:
        def make(kind: str, **values: Any) -> Outcome:
            return Outcome(
                task.url_id, kind, url=url, http_status=r.status or None, fetched_at=fetched_at, stored=stored, **values
            )

        if r.error is not None:
            return make(RETRY, reason="fetch_error", detail=r.error, retry_at=None)
        if r.skip_reason is not None:
            return make(SKIPPED, reason=r.skip_reason, detail=r.detail)
        if r.status == 429 or r.status >= 500:
            retry_at = _at(time.time() + r.retry_after) if r.retry_after is not None else None
            return make(RETRY, reason="http_status", detail=f"HTTP {r.status}", retry_at=retry_at)
        if r.status == 304:
            return make(FAILED, reason="http_status", detail="HTTP 304 to a request that was not conditional")
        if 300 <= r.status < 400:
            target = canonical_url(r.location) if r.location else None
            if target is None:
                return make(FAILED, reason="http_status", detail="redirect without a usable Location")
            return make(REDIRECT, location=target)
        if not 200 <= r.status < 300 or r.body is None:
            return make(FAILED, reason="http_status", detail=f"HTTP {r.status}")
        # Kept for reextract: the DOM the page was parsed from (the rendered one when rendered).
        kept = {"html": r.body, "charset": r.charset} if self.settings.keep_html else {}
        fetched_hash = body_hash(r.body, r.charset)
        if stored is not None and stored.body_hash == fetched_hash and ctx.render != ALWAYS:
            # The very body the stored document was parsed from (as fetched, no application
            # shell): the parse would find it unchanged, with the links it keeps.
            links = await self._stored_links(stored)
            if links is not None:
                return make(UNCHANGED, links=links, **kept)
        page = await self._parse(url, r.body, r.charset)
        rendered, notes, body = False, list[tuple[str, str]](), r.body
        why = "render: always" if ctx.render == ALWAYS else page.app_shell if ctx.render == AUTO else ""
        if why:
            try:
                got = await self._render(ctx, url, r, why)
            except _RenderFailed as failed:
                return make(failed.kind, reason=failed.reason, detail=failed.detail)
            if got is not None:
                page, notes, body = got
                rendered = True
            elif self._first_warning(ctx.id):
                notes = [("warn", f"Pages are fetched over HTTP only ({why}: {url}): {self._no_browser()}")]
        links = []
        for n, link in enumerate(page.links, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a page may have any number of links
            canonical = canonical_link(link)
            if canonical:
                links.append(canonical)
        if rendered and self.settings.keep_html:
            kept = {"html": body, "charset": "utf-8"}
        if stored is not None and page.content_hash == stored.content_hash:
            return make(UNCHANGED, links=links, notes=notes, rendered=rendered, **kept)
        return make(
            PAGE,
            page=page,
            links=links,
            etag=r.etag,
            last_modified=r.last_modified,
            notes=notes,
            rendered=rendered,
            # Only a page parsed as fetched is the same page whenever the same body comes again.
            body_hash=None if rendered or page.app_shell else fetched_hash,
            **kept,
        )

    def _no_browser(self) -> str | None:
        """Why pages cannot be rendered here (None when they can)."""
        if self.browser is None:
            return "this worker has no browser"
        return self.browser.unavailable()

    def _first_warning(self, job_id: str) -> bool:
        if job_id in self._warned_no_browser:
            return False
        self._warned_no_browser[job_id] = None
        while len(self._warned_no_browser) > JOBS_REMEMBERED:
            self._warned_no_browser.popitem(last=False)
        return True

    async def _render(
        self, ctx: JobContext, url: str, r: FetchResult, why: str
    ) -> tuple[ParsedPage, list[tuple[str, str]], bytes] | None:
        """The page rendered in the browser, what the job log says about it, and its DOM; None when there
        is no browser (render: auto then keeps the page as fetched). _RenderFailed when it
        failed: a crash or hang is retried like a 5xx (then the URL fails with the reason)."""
        assert r.body is not None
        why_not = self._no_browser()
        if why_not is not None or self.browser is None:
            if ctx.render == ALWAYS:  # the next task of the job fails it, saying so
                raise _RenderFailed(RETRY, "render_error", str(why_not))
            return None
        try:
            done = await self.browser.render(url, r.body, r.content_type or "text/html", ctx.auth, ctx.wait_for)
        except BrowserUnavailable as exc:
            if ctx.render == ALWAYS:
                raise _RenderFailed(RETRY, "render_error", str(exc)) from exc
            return None
        if done.error is not None:
            raise _RenderFailed(RETRY, "render_error", done.error)
        if done.too_large or done.html is None:
            raise _RenderFailed(SKIPPED, TOO_LARGE, "the rendered page is over the body limit")
        # Links resolve where the page's router moved it (history.pushState stays on the origin).
        base = done.location if done.location and origin(done.location) == origin(url) else url
        page = await self._parse(base, done.html, "utf-8")
        notes = [("info", f"Rendered ({why}): {url}")]
        if done.waited:
            notes.append(("warn", f"Rendered {url}: {done.waited}"))
        return page, notes, done.html

    # ------------------------------------------------------------------------ job contexts

    async def _context(self, job_id: str) -> JobContext:
        ctx = self._contexts.get(job_id)
        if ctx is not None:
            self._contexts.move_to_end(job_id)
            return ctx
        # One read per job however many of its tasks arrive together (a job's first prefetch).
        loading = self._loading.get(job_id)
        if loading is None:
            loading = self._loading[job_id] = asyncio.ensure_future(
                self._retrying("reading a job", lambda: self._load_context(job_id))
            )
            loading.add_done_callback(lambda done: self._context_loaded(job_id, done))
        # Shielded: a waiter cancelled does not cancel the read the others wait for.
        return await asyncio.shield(loading)

    def _context_loaded(self, job_id: str, done: asyncio.Future[JobContext]) -> None:
        del self._loading[job_id]
        if done.cancelled() or done.exception() is not None:
            return  # each waiter got the error and gives its task back
        self._contexts[job_id] = done.result()
        while len(self._contexts) > JOBS_REMEMBERED:
            self._contexts.popitem(last=False)

    async def _load_context(self, job_id: str) -> JobContext:
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(
                        JOBS.c.id,
                        JOBS.c.source_id,
                        JOBS.c.config,
                        JOBS.c.source_snapshot,
                        JOBS.c.seed_urls,
                        JOBS.c.auth,
                        JOBS.c.request_id,
                        JOBS.c.recrawl,
                    ).where(JOBS.c.id == job_id)
                )
            ).one()
        return job_context(row)

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        return await retrying(what, attempt, on_error=self._on_db_error)

    async def _give_back(self, deliveries: list[Delivery], exc: Exception) -> None:
        """Requeue deliveries whose work failed; after a database error, wait first (doubling
        while errors follow each other) unless the worker is stopping."""
        if is_database_error(exc):
            delay = min(DB_BACKOFF_FIRST * 2**self._db_errors, DB_BACKOFF_MAX)
            self._db_errors += 1
            log.warning("database error: %d task(s) go back to the queue in %.1f s", len(deliveries), delay)
            waits = [asyncio.ensure_future(self._backoff_sleep(delay)), asyncio.ensure_future(self._stopping.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        for delivery in deliveries:
            await _settle_delivery(delivery, requeue=True)

    def _on_db_error(self, _exc: BaseException) -> None:
        self._forget_known()

    def _forget_known(self) -> None:
        """Settles commit asynchronously (synchronous_commit off): when the database fails, a
        commit it acknowledged may be lost, and the cache would claim URLs the frontier never
        got (their links would never be inserted again). Any database error empties it, in
        place, so a settle under way (or retrying) stops trusting it too."""
        for urls in self._known.values():
            urls.clear()
        self._known.clear()

    def _known_urls(self, job_id: str) -> dict[str, int]:
        known = self._known.get(job_id)
        if known is None:
            known = self._known[job_id] = {}
            while len(self._known) > JOBS_REMEMBERED:
                self._known.popitem(last=False)
        return known

    # ---------------------------------------------------------------------------- sitemaps

    async def _sitemap_links(self, ctx: JobContext, seed: str) -> list[str]:
        """The canonical URLs the sitemaps of the seed's site list: those its robots.txt names
        and /sitemap.xml, indexes followed, each sitemap fetched only if it is in scope and
        robots.txt allows it, in its host's politeness slot."""
        base = f"{seed.split('://', 1)[0]}://{host_of(seed)}"
        robots = await self._robots_for(seed)
        named = list(robots.parser.sitemaps) if robots.parser is not None else []

        async def admit(url: str) -> bool:
            canonical = canonical_url(url)
            if canonical is None or ctx.scope.url_reason(canonical) is not None:
                return False
            if ctx.obey_robots:
                site_robots = await self._robots_for(canonical)
                if not site_robots.allowed(canonical):
                    return False
                delay = max(ctx.rate_limit_ms / 1000, site_robots.delay())
            else:
                delay = ctx.rate_limit_ms / 1000
            if delay > 0:
                # A seed's task waits its turn for its few sitemaps (at most max_sitemaps).
                start = await self._claim_slot(host_of(canonical), delay)
                while start > time.time() + MAX_SLOT_WAIT:
                    await asyncio.sleep(min(start - time.time(), MAX_SLOT_WAIT))
                    start = await self._claim_slot(host_of(canonical), delay)
                if start > time.time():
                    await asyncio.sleep(start - time.time())
            return True

        found = await sitemap_urls(self.fetcher.client(), [*named, f"{base}/sitemap.xml"], admit, self.sitemap_limits)
        links = []
        for n, url in enumerate(found, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            canonical = canonical_link(url)
            if canonical:
                links.append(canonical)
        log.info("sitemaps of %s list %d URL(s)", base, len(links))
        return links

    # ------------------------------------------------------------------------------ robots

    def _robots_known(self, host: str) -> Robots | None:
        cached = self._robots.get(host)
        if cached is None or cached[1] < time.monotonic():
            return None
        return cached[0]

    async def _robots_for(self, url: str) -> Robots:
        host = host_of(url)
        known = self._robots_known(host)
        if known is not None:
            return known
        async with self._robots_locks[host]:
            known = self._robots_known(host)
            if known is not None:
                return known
            status, body = await self._retrying("reading robots.txt", lambda: self._robots_from_db(host))
            if status is None:
                status, body = await self.fetcher.robots(f"{url.split('://', 1)[0]}://{host}")
                await self._retrying("caching robots.txt", lambda: self._save_robots(host, status, body))
            robots = Robots.parse(status, body, self.settings.user_agent)
            self._robots[host] = (robots, time.monotonic() + self.settings.robots_ttl)
            return robots

    async def _robots_from_db(self, host: str) -> tuple[int | None, str]:
        async with self.db.read() as session:
            row = await session.get(RobotsRow, host)
        if row is None or row.fetched_at < utcnow() - timedelta(seconds=self.settings.robots_ttl):
            return None, ""
        return row.status, row.body

    async def _save_robots(self, host: str, status: int, body: str) -> None:
        now = utcnow()
        async with self.db.session() as session:
            insert = dialect_insert(self.db, ROBOTS_CACHE).values(host=host, status=status, body=body, fetched_at=now)
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["host"], set_={"status": status, "body": body, "fetched_at": now}
                )
            )

    # ------------------------------------------------------------------------- politeness

    async def _claim_slot(self, host: str, delay: float) -> float:
        """The time (epoch seconds) this worker may send its request to `host`: one slot per
        `delay` seconds, shared by every worker process through the database."""

        async def claim() -> float:
            now = utcnow()
            table = HOST_SLOTS
            async with self.db.session() as session:
                await session.execute(
                    dialect_insert(self.db, table)
                    .values(host=host, next_at=now)
                    .on_conflict_do_nothing(index_elements=["host"])
                )
                current = (
                    await session.execute(select(table.c.next_at).where(table.c.host == host).with_for_update())
                ).scalar_one()
                start = max(current, now)
                if start <= now + timedelta(seconds=MAX_SLOT_WAIT):
                    await session.execute(
                        table.update().where(table.c.host == host).values(next_at=start + timedelta(seconds=delay))
                    )
                return start.timestamp()

        return await self._retrying("claiming a politeness slot", claim)  # type: ignore[no-any-return]


class _RenderFailed(Exception):
    def __init__(self, kind: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.reason, self.detail = kind, reason, detail


def _track(tasks: set[asyncio.Task[T]], work: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """Run `work` as a task held in `tasks` until it ends."""
    task = asyncio.create_task(work, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def _all_done(tasks: set[asyncio.Task[Any]]) -> None:
    """Until `tasks` is empty, those started meanwhile included."""
    while tasks:
        await asyncio.wait(list(tasks))


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=utcnow().tzinfo)


def _is_seed(task: url_task_pb2.UrlTask) -> bool:
    """A seed URL's own task (not a redirect target, which keeps depth 0 too)."""
    return task.depth == 0 and task.redirect_hops == 0


def body_hash(body: bytes, charset: str | None) -> str:
    """The hash of a page's body as fetched, with the charset it was declared in (the same bytes
    in another charset are another page)."""
    digest = hashlib.sha256((charset or "").encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def leased_row(task: url_task_pb2.UrlTask) -> UrlRow | None:
    """The URL's frontier row as the task carries it (None from publishers that send none)."""
    if not task.HasField("attempts"):
        return None
    document_id = task.document_id or None
    return UrlRow(
        task.url_id, task.job_id, QUEUED, task.url, task.depth, document_id, task.attempts, task.redirect_hops
    )


async def _settle_delivery(delivery: Delivery, *, requeue: bool, ack: bool = False) -> None:
    """Ack or reject; a broker that went away already requeued the message, so failures pass."""
    try:
        if ack:
            await delivery.ack()
        else:
            await delivery.reject(requeue=requeue)
    except Exception as exc:
        log.debug("could not settle a delivery (%s); the broker will deliver it again", exc)


# ------------------------------------------------------------------------------------ process


def build_worker(db: Database, queue: TaskQueue, settings: CrawlerSettings, **hooks: Any) -> Worker:
    # On RabbitMQ, tasks this process leased and never sent are republished once it goes silent.
    heartbeat = Heartbeat(db, settings.publisher_timeout, "worker") if isinstance(queue, RabbitQueue) else None
    fetcher = Fetcher(
        user_agent=settings.user_agent,
        timeout=settings.fetch_timeout,
        max_body=settings.max_body_bytes,
        connections=max(16, settings.worker_prefetch),
        guard=FetchGuard.from_settings(settings),
    )
    parser = Parser(inline_limit=settings.parse_inline_limit, processes=settings.parse_processes)
    browser = BrowserFetcher(
        fetcher,
        path=settings.browser_path,
        pages=settings.browser_pages,
        recycle_pages=settings.browser_recycle_pages,
        timeout=settings.fetch_timeout,
    )
    return Worker(db, queue, fetcher, parser, settings, browser=browser, heartbeat=heartbeat, **hooks)


@contextlib.asynccontextmanager
async def running_worker(
    db: Database, queue: TaskQueue, settings: CrawlerSettings, **hooks: Any
) -> AsyncIterator[Worker]:
    """A started worker; on exit it stops (within the shutdown grace), then its fetcher closes."""
    worker = build_worker(db, queue, settings, **hooks)
    try:
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()
    finally:
        if worker.browser is not None:
            await worker.browser.close()
        await worker.fetcher.close()


# Run once on each connection a worker opens at start: its session reads the catalog entries of
# the tables (and their indexes) every settle touches before the first task arrives.
WARM_UP = (
    "SELECT 1 FROM crawl_urls u JOIN crawl_jobs j ON j.id = u.job_id JOIN documents d ON d.id = u.document_id"
    " JOIN job_logs l ON l.job_id = j.id WHERE false"
)


async def serve(settings: CrawlerSettings, stop: asyncio.Event) -> None:
    """Consume URL tasks until `stop` is set."""
    service_var.set("crawler-worker")
    async with AsyncExitStack() as stack:
        # Settles commit asynchronously (synchronous_commit off): a commit lost in a database
        # crash only reverts its URLs to queued with their leases, and the pump republishes them.
        # No pre-ping: every unit of work retries on a lost connection anyway.
        db = Database(
            settings.database_url_for("crawler"),
            "crawler",
            pool_size=settings.db_pool_size,
            pre_ping=False,
            server_settings={**PG_SESSION_SETTINGS, "synchronous_commit": "off"},
        )
        await db.start()
        stack.push_async_callback(db.close)
        await db.warm(settings.db_pool_size, WARM_UP)
        queue = await tasks_queue.open_queue(settings, connection_name="quaero-crawler-worker")
        stack.push_async_callback(queue.close)
        worker = await stack.enter_async_context(running_worker(db, queue, settings))
        # A worker process lives long: its parse pool starts now, not on the first large page.
        announce = asyncio.create_task(_say_when_started(worker.parser.start()))
        log.info("crawl worker consuming", extra={"queue": settings.queue_name})
        await stop.wait()
        announce.cancel()
        log.info("crawl worker shutting down")


async def _say_when_started(pool: list[concurrent.futures.Future[None]]) -> None:
    """Log once the parse pool's processes have started (within POOL_START_TIMEOUT)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, pool)), POOL_START_TIMEOUT)
        log.info("crawl worker's parse pool started")


def main() -> None:
    settings = CrawlerSettings()
    configure_logging("crawler-worker", settings.log_level)
    settings.require_shared_infrastructure(amqp=True)
    metrics.serve_process_metrics(settings)
    run_process(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
