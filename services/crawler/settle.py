"""Settling URLs: one transaction records what fetching a batch of a job's URLs found.

For each batch (one job, any number of URLs), in one transaction:
1. claim the URLs still `queued` (a settled URL means a duplicate delivery: dropped, acked);
2. upsert the documents of the pages;
3. record each URL's outcome;
4. insert the URLs the pages link to (skipped ones with their reason); a URL already recorded
   deeper takes the smaller depth, and so do its descendants, along the outlinks every fetched
   URL keeps (a URL skipped for its depth and now within reach is queued again);
5. update the job's counters in one statement (`RETURNING` them): its row lock orders
   concurrent batches, and the one that leaves nothing pending completes the job (a
   compare-and-set from `running`);
6. lease the next tasks (at most `concurrency` in flight), append events and logs.
The caller commits, publishes the leased tasks and acks the deliveries.

On PostgreSQL a batch is first settled the fast way: everything above is worked out from the
URLs' rows as their tasks carried them when leased (or as read, without a lock, for tasks that
carry none), and one call of crawl_settle() (migration 0005) writes it all, provided the rows are
unchanged by then: one round trip instead of eight.
The function raises, writing nothing, for what only the full transaction handles (a row changed
meanwhile, a URL found nearer a seed, the budget reached, the job completing, a progress event
due, a cancelled job), and the batch is settled again as above.

`max_pages` is a budget of stored pages. A batch that could overflow it is retried with the
job's row locked from the start, so exactly `max_pages` pages are stored, never more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import asyncpg
from sqlalchemy import bindparam, case, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from libs import metrics
from libs.db import Database, PgStatement, utcnow
from services.crawler.fetch import Auth, Robots
from services.crawler.frontier import BUDGET, DEPTH, REDIRECT_LIMIT, ROBOTS, Scope, host_of, url_key
from services.crawler.parse import ParsedPage
from services.crawler.store import (
    CANCELLED,
    CARRIED_LINKS,
    CHANGED,
    CHANGES,
    DOCUMENTS,
    DONE,
    FAILED,
    JOBS,
    LEVELS,
    NEW,
    QUEUED,
    REMOVED,
    RUNNING,
    SKIPPED,
    UNCHANGED,
    URLS,
    VERSIONS,
    Stored,
    Task,
    append_event,
    append_logs,
    cancel_queued,
    dialect_insert,
    dispatch,
    drop_queued,
    event_payload,
    finish_job,
    job_channel,
    retrying,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Outcome kinds; and UNCHANGED (store.py): a page whose content is the stored document's, a 304
# or the same content hash. Its links come from the parse, or (a 304) from the stored document;
# nothing of the document is written.
PAGE = "page"
REDIRECT = "redirect"
RETRY = "retry"
# Answers that say a stored page is gone: its document is tombstoned (a redirect: it lives on
# under the target's URL).
GONE = frozenset({404, 410})
MAX_REDIRECTS = 10
# URLs per statement of a settle: SQLite takes at most 32,766 variables a statement (a frontier
# row is 11 of them); PostgreSQL's arrays have no such limit, but the work between two turns of
# the event loop should be bounded (building and encoding a chunk's rows).
CHUNK = 1_000
# A batch with more links than this is settled the full way, in chunks, not by one call of
# crawl_settle().
FAST_SETTLE_LINKS = 2_000
# Links classified between two turns of the event loop (about 5 ms of work).
YIELD_EVERY = 500

# PostgreSQL statements of the hot path. Lists travel as arrays (unnest), so each statement has
# one shape whatever the batch size: prepared once per connection, compiled never.
# Locked by primary key alone, the job and state checked by the caller: with `job_id = ... AND
# state = 'queued'` in the WHERE, a planner that underestimates a young job's rows scans every
# queued URL of the job through (state, job_id, id) instead of probing a handful of ids.
_PG_CLAIM = text(
    """
    SELECT id, job_id, state, url, depth, document_id, attempts, redirect_hops FROM crawl_urls
    WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR UPDATE
    """
)
_PG_COUNTERS = PgStatement(
    """
    UPDATE crawl_jobs SET total_urls = total_urls + :dt, completed_urls = completed_urls + :dc,
        failed_urls = failed_urls + :df, pending_urls = pending_urls + :dp, skipped_urls = skipped_urls + :ds,
        result_count = result_count + :dr, changes_new = changes_new + :dn, changes_changed = changes_changed + :dch,
        changes_unchanged = changes_unchanged + :du, changes_removed = changes_removed + :drm,
        updated_at = CAST(:now AS timestamptz),
        progress_event_at = CASE WHEN progress_event_at IS NULL OR progress_event_at < CAST(:cutoff AS timestamptz)
                                 THEN CAST(:now AS timestamptz) ELSE progress_event_at END
    WHERE id = :job_id AND (NOT CAST(:guard AS boolean) OR result_count + :dr <= max_pages)
    RETURNING status, total_urls, completed_urls, failed_urls, pending_urls, skipped_urls, result_count, max_pages,
              concurrency, request_id, progress_event_at, changes_new, changes_changed, changes_unchanged,
              changes_removed
    """
)
# The pages' documents: the version a changed page replaces is kept (the newest :keep of them),
# then each is inserted or updated (a version more when its content changed; back from a removal).
# A page's links travel as one text, its canonical URLs joined by newlines (which no canonical URL
# holds), split again here.
_PG_DOCUMENTS = PgStatement(
    """
    WITH d AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:url_keys AS text[]), CAST(:urls AS text[]),
                             CAST(:hosts AS text[]), CAST(:titles AS text[]), CAST(:markdowns AS text[]),
                             CAST(:metadata AS text[]), CAST(:hashes AS text[]), CAST(:word_counts AS int[]),
                             CAST(:etags AS text[]), CAST(:last_modifieds AS text[]), CAST(:links AS text[]))
             AS d(id, url_key, url, host, title, markdown, metadata, content_hash, word_count, etag, last_modified,
                  links)
    ), was AS MATERIALIZED (
        SELECT s.id, s.version, s.content_hash, s.title, s.markdown, s.updated_at
        FROM d CROSS JOIN LATERAL (
            SELECT id, version, content_hash, title, markdown, updated_at FROM documents
            WHERE source_id = :source_id AND url_key = d.url_key LIMIT 1) s
        WHERE s.content_hash <> d.content_hash AND :keep > 0
    ), kept AS (
        INSERT INTO document_versions (document_id, version, content_hash, title, markdown, fetched_at, created_at)
        SELECT id, version, content_hash, title, markdown, updated_at, CAST(:now AS timestamptz) FROM was
        ON CONFLICT DO NOTHING
    ), pruned AS (
        DELETE FROM document_versions v USING was WHERE v.document_id = was.id AND v.version <= was.version - :keep
    )
    INSERT INTO documents (id, source_id, url_key, url, host, title, markdown, metadata, content_hash,
                           word_count, job_id, etag, last_modified, links, created_at, updated_at)
    SELECT d.id, :source_id, d.url_key, d.url, d.host, d.title, d.markdown, d.metadata::jsonb, d.content_hash,
           d.word_count, :job_id, d.etag, d.last_modified, string_to_array(d.links, E'\n'),
           CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM d
    ON CONFLICT (source_id, url_key) DO UPDATE SET
        url = excluded.url, host = excluded.host, title = excluded.title, markdown = excluded.markdown,
        metadata = excluded.metadata, word_count = excluded.word_count, job_id = excluded.job_id,
        etag = excluded.etag, last_modified = excluded.last_modified, links = excluded.links, removed_at = NULL,
        version = documents.version + CASE WHEN documents.content_hash = excluded.content_hash THEN 0 ELSE 1 END,
        updated_at = CASE WHEN documents.content_hash = excluded.content_hash
                          THEN documents.updated_at ELSE excluded.updated_at END,
        content_hash = excluded.content_hash
    RETURNING id, url_key
    """
)
_PG_OUTCOMES = PgStatement(
    """
    UPDATE crawl_urls u SET state = v.state, reason = v.reason, detail = v.detail, http_status = v.http_status,
        redirected_to = v.redirected_to, document_id = coalesce(v.document_id, u.document_id),
        outlinks = string_to_array(v.outlinks, ','), attempts = v.attempts, next_attempt_at = v.next_attempt_at,
        change = v.change, content_hash = v.content_hash, previous_hash = v.previous_hash,
        published_at = NULL, updated_at = CAST(:now AS timestamptz)
    FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:reasons AS text[]), CAST(:details AS text[]),
                CAST(:statuses AS int[]), CAST(:redirects AS text[]), CAST(:documents AS text[]),
                CAST(:outlinks AS text[]), CAST(:attempts AS int[]), CAST(:next AS timestamptz[]),
                CAST(:changes AS text[]), CAST(:content_hashes AS text[]), CAST(:previous_hashes AS text[]))
         AS v(id, state, reason, detail, http_status, redirected_to, document_id, outlinks, attempts, next_attempt_at,
              change, content_hash, previous_hash)
    WHERE u.id = v.id
    """
)
# Reads the known URLs and inserts the new ones in one round trip. Known URLs are looked up on the
# statement's snapshot, one key at a time on the unique (job_id, url_key) index (LIMIT 1 keeps the
# planner from turning the lookups into a scan of the job's URLs), and never inserted: an insert
# that meets a key another settle has just updated (a page it settled, a URL it leased) waits for
# that transaction, and two settles linking to each other's pages deadlocked (a one-second stall
# each time, PostgreSQL's deadlock_timeout). What is left to wait on is a URL inserted by a settle
# under way, and both insert in key order, so no cycle can form.
_PG_DISCOVER = PgStatement(
    """
    WITH known AS MATERIALIZED (
        SELECT c.url_key, c.id, c.depth FROM unnest(CAST(:keys AS text[])) AS k(url_key)
        CROSS JOIN LATERAL (
            SELECT id, url_key, depth FROM crawl_urls WHERE job_id = :job_id AND url_key = k.url_key LIMIT 1) c
    ), ins AS (
        INSERT INTO crawl_urls (job_id, url_key, url, host, depth, state, reason, redirect_hops, discovered_from,
                                created_at, updated_at)
        SELECT :job_id, t.url_key, t.url, t.host, t.depth, t.state, t.reason, t.hops, t.discovered_from,
               CAST(:now AS timestamptz), CAST(:now AS timestamptz)
        FROM unnest(CAST(:keys AS text[]), CAST(:urls AS text[]), CAST(:hosts AS text[]), CAST(:depths AS int[]),
                    CAST(:states AS text[]), CAST(:reasons AS text[]), CAST(:hops AS int[]), CAST(:froms AS text[]))
             WITH ORDINALITY AS t(url_key, url, host, depth, state, reason, hops, discovered_from, n)
        WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.url_key = t.url_key)
        ORDER BY t.n
        ON CONFLICT (job_id, url_key) DO NOTHING
        RETURNING url_key, state
    )
    SELECT url_key, state, NULL::bigint AS id, NULL::int AS depth FROM ins
    UNION ALL
    SELECT url_key, NULL, id, depth FROM known
    """
)

# One level of a depth decrease: the URLs of these keys recorded deeper than given take the given
# depth (a URL skipped for its depth and now within reach is queued again). Each row is locked
# as it is found (FOR UPDATE waits for a settle that holds it, then reads the row as committed):
# the outlinks returned are those of the page as settled, so a decrease is never carried down
# the links of a page version that another settle was replacing.
_PG_LOWER = PgStatement(
    """
    WITH lowered AS MATERIALIZED (
        SELECT c.id, c.state, c.reason, t.depth, t.discovered_from, t.admit
        FROM unnest(CAST(:keys AS text[]), CAST(:depths AS int[]), CAST(:froms AS text[]), CAST(:admits AS boolean[]))
             AS t(url_key, depth, discovered_from, admit)
        CROSS JOIN LATERAL (
            SELECT id, state, reason FROM crawl_urls
            WHERE job_id = :job_id AND url_key = t.url_key AND depth > t.depth FOR UPDATE) c
    ), requeued AS (
        SELECT id, state = 'skipped' AND reason = 'depth' AND depth <= :max_depth AND admit AS back
        FROM lowered
    )
    UPDATE crawl_urls u SET depth = l.depth, discovered_from = l.discovered_from,
        updated_at = CAST(:now AS timestamptz),
        state = CASE WHEN r.back THEN 'queued' ELSE u.state END,
        reason = CASE WHEN r.back THEN '' ELSE u.reason END
    FROM lowered l JOIN requeued r ON r.id = l.id
    WHERE u.id = l.id
    RETURNING u.url_key, u.url, u.depth, u.state, r.back AS requeued, u.outlinks,
              u.redirected_to IS NOT NULL AS redirect
    """
)

# The fast settle (migration 0005 has the function and what it leaves to the full settle).
_PG_READ = PgStatement(
    """
    SELECT id, job_id, state, url, depth, document_id, attempts, redirect_hops FROM crawl_urls
    WHERE id = ANY(CAST(:ids AS bigint[]))
    """
)
_PG_SETTLE = PgStatement(
    """
    SELECT * FROM crawl_settle(
        :job_id, :source_id, :now, :cutoff,
        :d_ids, :d_url_keys, :d_urls, :d_hosts, :d_titles, :d_markdowns, :d_metadata, :d_hashes, :d_word_counts,
        :d_etags, :d_last_modifieds, :d_links, :keep,
        :o_ids, :o_states, :o_reasons, :o_details, :o_statuses, :o_redirects, :o_doc_keys, :o_documents,
        :o_outlinks, :o_attempts, :o_next, :o_changes, :o_content_hashes, :o_previous_hashes,
        :c_depths, :c_attempts, :c_hops, :c_documents,
        :n_keys, :n_urls, :n_hosts, :n_depths, :n_states, :n_reasons, :n_hops, :n_froms,
        :dt, :dc, :df, :dp, :ds, :dr, :dn, :dch, :du, :drm, :guard, :waiting, :publisher, :carried_links,
        :l_levels, :l_messages)
    """
)
# crawl_settle()'s leased tasks: its out_task_* arrays, and the row keys Task.leased reads of them
# (the stored_* of a recrawl's stored documents, links joined by newlines; out_stored_known says
# whether the job is a recrawl).
_LEASED_OUT = (
    "ids", "urls", "depths", "attempts", "hops", "documents", "stored_ids", "stored_hashes", "stored_etags",
    "stored_last_modifieds", "stored_has_links", "stored_links", "stored_body_hashes",
)  # fmt: skip
_LEASED_COLUMNS = (
    "id", "url", "depth", "attempts", "redirect_hops", "document_id", "stored_id", "stored_hash", "stored_etag",
    "stored_last_modified", "stored_has_links", "stored_links", "stored_body_hash",
)  # fmt: skip
# What crawl_settle raises when the full settle has to run instead.
FULL_SETTLE_NEEDED = "QS001"


class UrlRow(NamedTuple):
    """A URL being settled, as its task carries it or the fast settle reads it (the columns of
    _PG_READ)."""

    id: int
    job_id: str
    state: str
    url: str
    depth: int
    document_id: str | None
    attempts: int
    redirect_hops: int


@dataclass
class Outcome:
    """What happened to one URL of a job."""

    url_id: int
    kind: str  # page, unchanged, redirect, failed, skipped, retry
    url: str = ""
    http_status: int | None = None
    reason: str = ""
    detail: str = ""
    # redirect: the canonical target.
    location: str | None = None
    page: ParsedPage | None = None
    # page: its links, canonical.
    links: list[str] = field(default_factory=list)
    # retry: when to try again.
    retry_at: datetime | None = None
    fetched: bool = True
    fetched_at: datetime = field(default_factory=utcnow)
    # The URL's row as its task carried it, if it did: the fast settle then need not read it.
    row: UrlRow | None = None
    # The page's document as stored before this crawl (a recrawl): a page is new without one,
    # else changed or unchanged; a page found gone (404/410, a redirect) removes it.
    stored: Stored | None = None
    # page: the validators it was served with.
    etag: str | None = None
    last_modified: str | None = None
    # A seed: the URLs of its site's sitemaps, admitted at depth 1 as if the seed linked them
    # (whatever follow_links says; they are not the page's outlinks).
    sitemap_links: list[str] = field(default_factory=list)
    # page: whether its DOM is the one Chromium rendered.
    rendered: bool = False
    # Lines for the job log, (level, message).
    notes: list[tuple[str, str]] = field(default_factory=list)
    # page, unchanged (fetched whole): the body and its declared charset, kept for `reextract`
    # after the settle (QUAERO_KEEP_HTML).
    html: bytes | None = None
    charset: str | None = None
    # page: the hash of the body it was parsed from, when parsed as fetched (not rendered, not
    # an application shell): kept in the document's metadata, so the same body is not parsed again.
    body_hash: str | None = None


@dataclass(frozen=True)
class JobContext:
    """What a worker needs to know about a job, read once per job."""

    id: str
    source_id: str
    scope: Scope
    obey_robots: bool
    rate_limit_ms: int
    auth: Auth | None
    request_id: str
    # The source had documents stored when the job was created: its pages are looked up before
    # they are fetched (conditional requests; new, changed or unchanged).
    recrawl: bool = False
    # include, skip or only (CrawlConfig.sitemap).
    sitemap: str = "include"
    # When pages are rendered in Chromium (never, auto, always), and what a rendered page waits for.
    render: str = "auto"
    wait_for: str = ""


def job_context(row: Any) -> JobContext:
    """A job's scope and fetch options, from its crawl_jobs row."""
    cfg = row.config
    filters = (row.source_snapshot or {}).get("filters") or {}
    seeds = list(row.seed_urls)
    scope = Scope.build(
        seeds,
        allowed_domains=cfg.get("allowed_domains", []),
        allow_subdomains=bool(cfg.get("allow_subdomains", False)),
        include_sets=[cfg.get("include_patterns", []), filters.get("include_patterns", [])],
        excludes=[*cfg.get("exclude_patterns", []), *filters.get("exclude_patterns", [])],
        max_depth=int(cfg.get("max_depth", 2)),
        follow_links=bool(cfg.get("follow_links", True)) and cfg.get("sitemap") != "only",
    )
    auth = None
    if row.auth and (row.auth.get("headers") or row.auth.get("cookies")):
        base = (row.source_snapshot or {}).get("base_url") or (seeds[0] if seeds else "")
        auth = Auth.for_source(base, row.auth.get("headers") or {}, row.auth.get("cookies") or {})
    return JobContext(
        id=row.id,
        source_id=row.source_id,
        scope=scope,
        obey_robots=bool(cfg.get("obey_robots", True)),
        rate_limit_ms=int(cfg.get("rate_limit", 0)),
        auth=auth,
        request_id=row.request_id or "",
        recrawl=bool(row.recrawl),
        sitemap=str(cfg.get("sitemap") or "include"),
        render=str(cfg.get("render") or "auto"),
        wait_for=str(cfg.get("wait_for") or ""),
    )


@dataclass
class Settled:
    tasks: list[Task] = field(default_factory=list)
    # url_key -> depth now recorded in the frontier, for the worker's cache of known URLs.
    known: dict[str, int] = field(default_factory=dict)


class _Known(NamedTuple):
    """A URL already in the frontier, as the discover statement reads it."""

    id: int
    url_key: str
    depth: int


class _Lowering(NamedTuple):
    """A depth decrease to carry to a URL: its new depth, the URL that leads there at that
    depth, and whether the URL may be queued again if it had been skipped for its depth."""

    depth: int
    discovered_from: str
    admit: bool


class _Lowered(NamedTuple):
    """A URL whose depth a decrease lowered (the columns _PG_LOWER returns)."""

    url_key: str
    url: str
    depth: int
    state: str
    requeued: bool
    outlinks: list[str] | None
    redirect: bool


class _JobCounters(NamedTuple):
    """The job's row after a settle's counter update (the columns _PG_COUNTERS returns)."""

    status: str
    total_urls: int
    completed_urls: int
    failed_urls: int
    pending_urls: int
    skipped_urls: int
    result_count: int
    max_pages: int
    concurrency: int
    request_id: str
    progress_event_at: datetime | None
    changes_new: int
    changes_changed: int
    changes_unchanged: int
    changes_removed: int


@dataclass
class _Plan:
    """What a settle writes, worked out from the URLs' rows (see Settler._plan)."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    stored: list[tuple[Outcome, Any]] = field(default_factory=list)
    candidates: dict[str, _Candidate] = field(default_factory=dict)
    deltas: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("total", "completed", "failed", "pending", "skipped", "result", *CHANGES), 0
        )
    )
    logs: list[tuple[str, str]] = field(default_factory=list)
    # Documents found gone (404/410, a redirect), to tombstone.
    tombstones: list[str] = field(default_factory=list)


class _BudgetOverflow(Exception):
    """The batch would store more pages than the budget left: redo it with the job locked."""


@dataclass
class _Candidate:
    url: str
    depth: int
    hops: int
    discovered_from: str
    reason: str | None


class Settler:
    """Runs the settle transaction for a worker."""

    def __init__(
        self,
        db: Database,
        *,
        max_attempts: int = 3,
        retry_backoff: float = 2.0,
        progress_interval: float = 0.5,
        robots_lookup: Callable[[str], Robots | None] = lambda _host: None,
        on_db_error: Callable[[BaseException], None] | None = None,
        before_counters: Callable[[str, list[Outcome]], Awaitable[None]] | None = None,
        fast: bool = True,
        versions_kept: int = 5,
        publisher: str | None = None,
    ) -> None:
        self.db = db
        # The process that publishes the tasks settles lease (leased_by; see Heartbeat).
        self.publisher = publisher
        # Versions a changed document keeps of its earlier content.
        self.versions_kept = versions_kept
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.progress_interval = progress_interval
        self.robots_lookup = robots_lookup
        # Called with every database error of a settle, including those retried.
        self.on_db_error = on_db_error
        # A test hook: awaited inside the transaction just before the counter update (the full
        # settle only: with the hook, every settle is a full one).
        self.before_counters = before_counters
        # On PostgreSQL, settle through crawl_settle() when it can (see _settle_fast).
        self.fast = fast
        self.fast_settles = 0
        self.full_settles = 0

    async def settle(
        self,
        ctx: JobContext,
        outcomes: list[Outcome],
        known: Mapping[str, int],
        *,
        fetched_waiting: Callable[[], int] = lambda: 0,
    ) -> Settled:
        """Settle `outcomes` in one transaction and lease the job's next tasks.

        `fetched_waiting()` counts, when the tasks are leased, the job's pages this worker fetched
        that wait for its next settle: they are still leased in the frontier, but no longer hold a fetch slot, so as
        many more tasks may go out (`concurrency` is the number of URLs waiting to be fetched
        or being fetched, as with Scrapy's CONCURRENT_REQUESTS)."""
        what = f"settling {len(outcomes)} URL(s) of job {ctx.id}"

        def once(lock_job_first: bool) -> Any:
            return lambda: self._settle_once(ctx, outcomes, known, lock_job_first, fetched_waiting)

        # A batch with more links than a statement takes goes the full way, in chunks; so does
        # one that found a stored page gone (its document is tombstoned).
        fits = sum(len(o.links) for o in outcomes) <= FAST_SETTLE_LINKS and not any(map(_found_gone, outcomes))
        if self.fast and self.db.is_postgres and self.before_counters is None and fits:
            fast = lambda: self._settle_fast(ctx, outcomes, known, fetched_waiting)  # noqa: E731
            try:
                settled = await retrying(what, fast, on_error=self.on_db_error)
            except asyncpg.PostgresError as exc:
                # Not transient (retried otherwise), and the function undid whatever it did: the
                # full settle, the reference, decides (it fails too if the batch itself is bad).
                log.warning("the fast settle of %d URL(s) failed (%s); settling the full way", len(outcomes), exc)
                settled = None
            if settled is not None:
                self.fast_settles += 1
                metrics.SETTLES.labels("fast").inc()
                return settled  # type: ignore[no-any-return]
        self.full_settles += 1
        metrics.SETTLES.labels("full").inc()
        try:
            return await retrying(what, once(False), on_error=self.on_db_error)  # type: ignore[no-any-return]
        except _BudgetOverflow:
            return await retrying(what, once(True), on_error=self.on_db_error)  # type: ignore[no-any-return]

    async def _settle_fast(
        self,
        ctx: JobContext,
        outcomes: list[Outcome],
        known: Mapping[str, int],
        fetched_waiting: Callable[[], int],
    ) -> Settled | None:
        """The usual settle in one round trip and no transaction: work out what to write from the
        URLs' rows as their tasks carried them (read first when one did not), and let
        crawl_settle() check the rows are unchanged and write it all. None when the function
        found a case for the full settle (it wrote nothing then)."""
        now = utcnow()
        by_id = {o.url_id: o for o in outcomes}
        async with self.db.autocommit() as connection:
            carried = [o.row for o in outcomes if o.row is not None]
            if len(carried) < len(outcomes):
                carried = list(map(UrlRow._make, await _PG_READ.fetch_on(connection, {"ids": sorted(by_id)})))
            rows = {r.id: r for r in carried if r.job_id == ctx.id and r.state == QUEUED}
            if not rows:
                return Settled()
            plan = await self._plan(ctx, by_id, rows, None, now)
            todo = _unknown(plan.candidates, known)
            frontier = [self._frontier_row(ctx, k, c, False, now) for k, c in sorted(todo.items())]
            # By id: the order the rows are locked in, as by every settle.
            updates = sorted(plan.updates, key=lambda u: u["b_id"])
            read_as = [rows[u["b_id"]] for u in updates]
            params: dict[str, Any] = {
                "job_id": ctx.id,
                "source_id": ctx.source_id,
                "now": now,
                "cutoff": now - timedelta(seconds=self.progress_interval),
                "c_depths": [r.depth for r in read_as],
                "c_attempts": [r.attempts for r in read_as],
                "c_hops": [r.redirect_hops for r in read_as],
                "c_documents": [r.document_id for r in read_as],
                "o_doc_keys": [u["b_doc_key"] for u in updates],
                "o_documents": [u["b_document_id"] for u in updates],
                "keep": self.versions_kept,
                "guard": plan.deltas["result"] > 0,
                "waiting": fetched_waiting(),
                "publisher": self.publisher,
                "carried_links": CARRIED_LINKS,
                "l_levels": [LEVELS[level] for level, _ in plan.logs],
                "l_messages": [message for _, message in plan.logs],
            }
            documents = _document_arrays(_document_values(ctx, plan.stored, now))
            params |= {f"d_{k}": v for k, v in documents.items()}
            params |= {f"o_{k}": v for k, v in _outcome_arrays(updates).items()}
            params |= {f"n_{k}": v for k, v in _arrays(frontier, _FRONTIER_COLUMNS).items()}
            params |= _delta_params(plan.deltas)
            try:
                (found,) = await _PG_SETTLE.fetch_on(connection, params)
            except asyncpg.UndefinedFunctionError:
                # A database not migrated to this release yet: settle the old way from now on.
                log.warning("crawl_settle() is missing (run `quaero migrate`): every settle is a full one")
                self.fast = False
                return None
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != FULL_SETTLE_NEEDED:
                    raise
                log.debug("job %s: full settle (%s)", ctx.id, exc)
                return None
        request_id = found["out_request_id"] or ctx.request_id
        known_stored = bool(found["out_stored_known"])
        leased = zip(*(found[f"out_task_{c}"] or () for c in _LEASED_OUT), strict=True)
        return Settled(
            tasks=[Task.leased(ctx.id, _leased_row(values, known_stored), request_id) for values in leased],
            known=dict(zip(found["out_known_keys"] or (), found["out_known_depths"] or (), strict=True)),
        )

    async def _settle_once(
        self,
        ctx: JobContext,
        outcomes: list[Outcome],
        known: Mapping[str, int],
        lock_job_first: bool,
        fetched_waiting: Callable[[], int],
    ) -> Settled:
        async with self.db.session() as session:
            return await self._settle(session, ctx, outcomes, known, lock_job_first, fetched_waiting)

    async def _settle(
        self,
        session: AsyncSession,
        ctx: JobContext,
        outcomes: list[Outcome],
        known: Mapping[str, int],
        lock_job_first: bool,
        fetched_waiting: Callable[[], int] = lambda: 0,
    ) -> Settled:
        now = utcnow()
        result = Settled()
        budget_left: int | None = None
        if lock_job_first:
            job = (
                await session.execute(
                    select(JOBS.c.status, JOBS.c.result_count, JOBS.c.max_pages)
                    .where(JOBS.c.id == ctx.id)
                    .with_for_update()
                )
            ).one_or_none()
            if job is None:
                return result
            budget_left = max(0, job.max_pages - job.result_count)

        # 1. Claim.
        by_id = {o.url_id: o for o in outcomes}
        if self.db.is_postgres:
            # Through SQLAlchemy, not the driver: the first statement is what begins the session's
            # transaction, which the hot statements after it then run in.
            claimed = await session.execute(_PG_CLAIM, {"ids": sorted(by_id)})
            rows = {r.id: r for r in claimed if r.job_id == ctx.id and r.state == QUEUED}
        else:
            claim = (
                select(URLS.c.id, URLS.c.url, URLS.c.depth, URLS.c.document_id, URLS.c.attempts, URLS.c.redirect_hops)
                .where(URLS.c.id.in_(sorted(by_id)), URLS.c.job_id == ctx.id, URLS.c.state == QUEUED)
                .order_by(URLS.c.id)
                .with_for_update()
            )
            rows = {r.id: r for r in await session.execute(claim)}
        if not rows:
            return result

        plan = await self._plan(ctx, by_id, rows, budget_left, now)
        deltas, logs = plan.deltas, plan.logs

        # 2. Documents (within the budget).
        doc_ids = await self._upsert_documents(session, ctx, plan.stored, now)
        updates = plan.updates
        for u in updates:
            if u["b_doc_key"] is not None:
                u["b_document_id"] = doc_ids[u["b_id"]]

        # 3. Outcomes.
        if updates and self.db.is_postgres:
            arrays = _outcome_arrays(updates)
            await _PG_OUTCOMES.fetch(
                session, {"now": now, "documents": [u["b_document_id"] for u in updates], **arrays}
            )
        elif updates:
            await session.execute(
                update(URLS)
                .where(URLS.c.id == bindparam("b_id"))
                .values(
                    state=bindparam("b_state"),
                    reason=bindparam("b_reason"),
                    detail=bindparam("b_detail"),
                    http_status=bindparam("b_status"),
                    redirected_to=bindparam("b_redirected_to"),
                    document_id=func.coalesce(
                        bindparam("b_document_id", type_=URLS.c.document_id.type), URLS.c.document_id
                    ),
                    outlinks=bindparam("b_outlinks", type_=URLS.c.outlinks.type),
                    attempts=bindparam("b_attempts"),
                    next_attempt_at=bindparam("b_next_attempt_at", type_=URLS.c.next_attempt_at.type),
                    change=bindparam("b_change"),
                    content_hash=bindparam("b_content_hash"),
                    previous_hash=bindparam("b_previous_hash"),
                    published_at=None,
                    updated_at=now,
                ),
                updates,
            )
        if plan.tombstones:
            await self._tombstone(session, plan.tombstones, now)

        # 4. Discovered URLs.
        if plan.candidates:
            await self._discover(
                session, ctx, plan.candidates, known, deltas, result, budget_full=budget_left == 0, now=now
            )

        # 5. Counters.
        if self.before_counters is not None:
            await self.before_counters(ctx.id, outcomes)
        await self._count(
            session,
            ctx,
            deltas,
            logs,
            result,
            guard_budget=not lock_job_first,
            now=now,
            fetched_waiting=fetched_waiting,
        )
        return result

    async def _plan(
        self,
        ctx: JobContext,
        by_id: Mapping[int, Outcome],
        rows: Mapping[int, Any],
        budget_left: int | None,
        now: datetime,
    ) -> _Plan:
        """What settling the claimed `rows` writes, worked out from the rows as claimed (or read):
        each URL's outcome, the pages to store, the URLs the pages link to, the counters' deltas
        and the logs. A page's document id is known only once its document is upserted: its
        outcome carries the page's URL key (`b_doc_key`) until then."""
        plan = _Plan()
        deltas, updates, candidates, logs = plan.deltas, plan.updates, plan.candidates, plan.logs
        pages: list[tuple[Outcome, Any]] = []
        scope = ctx.scope

        def record(o: Outcome, row: Any, state: str, **values: Any) -> None:
            updates.append(
                {
                    "b_id": row.id,
                    "b_state": state,
                    "b_reason": values.get("reason", ""),
                    "b_detail": values.get("detail", "")[:2000],
                    "b_status": o.http_status,
                    "b_redirected_to": values.get("redirected_to"),
                    "b_document_id": values.get("document_id"),
                    "b_doc_key": values.get("doc_key"),
                    "b_outlinks": values.get("outlinks"),
                    "b_attempts": row.attempts + (1 if o.fetched else 0),
                    "b_next_attempt_at": values.get("next_attempt_at"),
                    "b_change": values.get("change"),
                    "b_content_hash": values.get("content_hash"),
                    "b_previous_hash": o.stored.content_hash if o.stored else None,
                }
            )

        def gone(o: Outcome) -> dict[str, Any]:
            """A stored page found gone: its document is tombstoned, and that is its change."""
            if o.stored is None:
                return {}
            plan.tombstones.append(o.stored.id)
            deltas[REMOVED] += 1
            return {"change": REMOVED, "content_hash": o.stored.content_hash}

        for url_id in sorted(rows):
            o, row = by_id[url_id], rows[url_id]
            kind, detail = o.kind, o.detail
            logs.extend(o.notes)
            if kind == RETRY and o.fetched and row.attempts + 1 >= self.max_attempts:
                kind, detail = FAILED, f"gave up after {row.attempts + 1} attempts: {o.detail}"
            if kind != RETRY:
                for n, link in enumerate(o.sitemap_links, 1):
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # a sitemap lists up to 50,000 URLs
                    depth = row.depth + 1
                    _add(candidates, url_key(link), _Candidate(link, depth, 0, row.url, self._reason(ctx, link, depth)))
            if kind in (PAGE, UNCHANGED):
                pages.append((o, row))
            elif kind == REDIRECT:
                target = url_key(o.location) if o.location else None
                record(o, row, DONE, redirected_to=o.location, outlinks=[target] if target else None, **gone(o))
                deltas["completed"] += 1
                deltas["pending"] -= 1
                if o.location and target:
                    hops = row.redirect_hops + 1
                    reason = self._reason(ctx, o.location, row.depth)
                    if reason is None and hops > MAX_REDIRECTS:
                        reason = REDIRECT_LIMIT
                    _add(candidates, target, _Candidate(o.location, row.depth, hops, row.url, reason))
            elif kind == FAILED:
                removal = gone(o) if o.http_status in GONE else {}
                record(o, row, FAILED, reason=o.reason, detail=detail, **removal)
                deltas["completed"] += 1
                deltas["failed"] += 1
                deltas["pending"] -= 1
                status = f" {o.http_status}" if o.http_status else ""
                logs.append(("warn", f"Failed ({o.reason}{status}): {row.url} {detail}".rstrip()))
            elif kind == SKIPPED:
                record(o, row, SKIPPED, reason=o.reason, detail=o.detail)
                deltas["skipped"] += 1
                deltas["total"] -= 1
                deltas["pending"] -= 1
            else:  # RETRY: back in the frontier, due later; the pump publishes it then.
                due = o.retry_at or now + timedelta(seconds=self.retry_backoff * 2**row.attempts)
                record(o, row, QUEUED, reason=o.reason, detail=o.detail, next_attempt_at=due)
                if o.fetched:
                    status = f" {o.http_status}" if o.http_status else ""
                    logs.append(
                        ("warn", f"Will retry ({o.reason}{status}) at {due.isoformat(timespec='seconds')}: {row.url}")
                    )

        # Pages to store, within the budget.
        pages.sort(key=lambda p: (p[1].depth, p[1].id))
        stored: list[tuple[Outcome, Any]] = []
        for o, row in pages:
            if row.document_id is None and budget_left is not None:
                if budget_left <= 0:
                    record(o, row, SKIPPED, reason=BUDGET)
                    deltas["skipped"] += 1
                    deltas["total"] -= 1
                    deltas["pending"] -= 1
                    continue
                budget_left -= 1
            stored.append((o, row))
        plan.stored = [(o, row) for o, row in stored if o.kind == PAGE]
        for o, row in stored:
            # Every link is recorded (beyond max_depth as skipped for its depth), and the page
            # keeps them as its outlinks: a shorter path found later is carried down them.
            outlinks: dict[str, None] | None = None
            if scope.follow_links:
                outlinks = {}
                for n, link in enumerate(o.links, 1):
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # a page may have any number of links
                    key = url_key(link)
                    outlinks[key] = None
                    reason = self._reason(ctx, link, row.depth + 1)
                    _add(candidates, key, _Candidate(link, row.depth + 1, 0, row.url, reason))
            links = None if outlinks is None else list(outlinks)
            if o.kind == UNCHANGED:
                assert o.stored is not None
                change, found = UNCHANGED, {"document_id": o.stored.id, "content_hash": o.stored.content_hash}
            else:
                assert o.page is not None
                change = NEW if o.stored is None else CHANGED
                found = {"doc_key": url_key(row.url), "content_hash": o.page.content_hash}
            record(o, row, DONE, outlinks=links, change=change, **found)
            deltas[change] += 1
            deltas["completed"] += 1
            deltas["pending"] -= 1
            if row.document_id is None:
                deltas["result"] += 1
        return plan

    def _reason(self, ctx: JobContext, url: str, depth: int) -> str | None:
        reason = ctx.scope.reason(url, depth)
        if reason is None and ctx.obey_robots:
            robots = self.robots_lookup(host_of(url))
            if robots is not None and not robots.allowed(url):
                return ROBOTS
        return reason

    async def _upsert_documents(
        self, session: AsyncSession, ctx: JobContext, stored: list[tuple[Outcome, Any]], now: datetime
    ) -> dict[int, str]:
        """Insert or update the pages' documents; returns each URL's document id. A document whose
        content changes keeps the version it had (the newest `versions_kept` of them)."""
        if not stored:
            return {}
        values = _document_values(ctx, stored, now)
        if self.db.is_postgres:
            rows = await _PG_DOCUMENTS.fetch(
                session,
                {
                    "source_id": ctx.source_id,
                    "job_id": ctx.id,
                    "now": now,
                    "keep": self.versions_kept,
                    **_document_arrays(values),
                },
            )
            ids = {r["url_key"]: r["id"] for r in rows}
            return {row.id: ids[url_key(row.url)] for _, row in stored}
        await self._keep_versions(session, ctx, values, now)
        insert = dialect_insert(self.db, DOCUMENTS)
        excluded = insert.excluded
        same = DOCUMENTS.c.content_hash == excluded.content_hash
        insert = insert.on_conflict_do_update(
            index_elements=["source_id", "url_key"],
            set_={
                **{name: excluded[name] for name in _UPDATED_COLUMNS},
                "removed_at": None,
                "version": DOCUMENTS.c.version + case((same, 0), else_=1),
                # A content hash tells a changed page from an unchanged one.
                "updated_at": case((same, DOCUMENTS.c.updated_at), else_=excluded.updated_at),
                "content_hash": excluded.content_hash,
            },
        ).returning(DOCUMENTS.c.id, DOCUMENTS.c.url_key)
        # Many parameter sets for one statement, compiled once.
        ids = {r.url_key: r.id for r in await session.execute(insert, values)}
        return {row.id: ids[url_key(row.url)] for _, row in stored}

    async def _keep_versions(
        self, session: AsyncSession, ctx: JobContext, values: list[dict[str, Any]], now: datetime
    ) -> None:
        """SQLite: what _PG_DOCUMENTS's first statements do (the versions changed pages replace)."""
        if self.versions_kept <= 0:
            return
        hashes = {v["url_key"]: v["content_hash"] for v in values}
        was = [
            r
            for r in await session.execute(
                select(
                    DOCUMENTS.c.id, DOCUMENTS.c.url_key, DOCUMENTS.c.version, DOCUMENTS.c.content_hash,
                    DOCUMENTS.c.title, DOCUMENTS.c.markdown, DOCUMENTS.c.updated_at,
                ).where(DOCUMENTS.c.source_id == ctx.source_id, DOCUMENTS.c.url_key.in_(list(hashes)))
            )
            if r.content_hash != hashes[r.url_key]
        ]  # fmt: skip
        if not was:
            return
        await session.execute(
            dialect_insert(self.db, VERSIONS).on_conflict_do_nothing(),
            [
                {"document_id": r.id, "version": r.version, "content_hash": r.content_hash, "title": r.title,
                 "markdown": r.markdown, "fetched_at": r.updated_at, "created_at": now}
                for r in was
            ],
        )  # fmt: skip
        for r in was:
            await session.execute(
                delete(VERSIONS).where(
                    VERSIONS.c.document_id == r.id, VERSIONS.c.version <= r.version - self.versions_kept
                )
            )

    async def _tombstone(self, session: AsyncSession, ids: list[str], now: datetime) -> None:
        """Documents found gone leave lists and search (until a crawl finds them again)."""
        for chunk in _chunks(sorted(ids), CHUNK):
            await session.execute(
                update(DOCUMENTS)
                .where(DOCUMENTS.c.id.in_(chunk), DOCUMENTS.c.removed_at.is_(None))
                .values(removed_at=now)
            )

    async def _discover(
        self,
        session: AsyncSession,
        ctx: JobContext,
        candidates: dict[str, _Candidate],
        known: Mapping[str, int],
        deltas: dict[str, int],
        result: Settled,
        *,
        budget_full: bool,
        now: datetime,
    ) -> None:
        todo = _unknown(candidates, known)
        if not todo:
            return
        inserted: dict[str, str] = {}
        existing: dict[str, Any] = {}
        # In chunks: a page may link to any number of URLs (SQLite takes at most 32,766
        # variables a statement; PostgreSQL's arrays have no limit, its statements should).
        keys = sorted(todo)
        for chunk in _chunks(keys, CHUNK):
            rows = [self._frontier_row(ctx, k, todo[k], budget_full, now) for k in chunk]
            if self.db.is_postgres:
                added, found = await self._insert_pg(session, ctx, rows, now)
            else:
                found = await self._read_known(session, ctx, chunk)
                fresh = [row for row in rows if row["url_key"] not in found]
                added = {}
                if fresh:
                    # Many parameter sets for one statement, compiled once (a VALUES list of a
                    # thousand rows took SQLAlchemy about a second to compile).
                    insert = (
                        dialect_insert(self.db, URLS)
                        .on_conflict_do_nothing(index_elements=["job_id", "url_key"])
                        .returning(URLS.c.url_key, URLS.c.state)
                    )
                    added = {r.url_key: r.state for r in await session.execute(insert, fresh)}
            inserted |= added
            existing |= found
        for k, state in inserted.items():
            result.known[k] = todo[k].depth
            if state == QUEUED:
                deltas["total"] += 1
                deltas["pending"] += 1
            else:
                deltas["skipped"] += 1
        raced = [k for k in keys if k not in inserted and k not in existing]
        for chunk in _chunks(raced, CHUNK):
            # Inserted by a concurrent batch after our snapshot: handle them as existing URLs.
            existing |= await self._read_known(session, ctx, chunk)
        nearer: dict[str, _Candidate] = {}
        for k, r in existing.items():
            if r.depth > todo[k].depth:
                nearer[k] = todo[k]
            else:
                result.known[k] = r.depth
        if nearer:
            await self._lower(session, ctx, nearer, deltas, result, budget_full=budget_full, now=now)

    @staticmethod
    async def _read_known(session: AsyncSession, ctx: JobContext, keys: Sequence[str]) -> dict[str, Any]:
        """The job's URLs of these keys already in the frontier (id, url_key, depth), by key."""
        found = await session.execute(
            select(URLS.c.id, URLS.c.url_key, URLS.c.depth).where(URLS.c.job_id == ctx.id, URLS.c.url_key.in_(keys))
        )
        return {r.url_key: r for r in found}

    @staticmethod
    def _frontier_row(ctx: JobContext, key: str, c: _Candidate, budget_full: bool, now: datetime) -> dict[str, Any]:
        reason = c.reason or (BUDGET if budget_full else None)
        return {
            "job_id": ctx.id,
            "url_key": key,
            "url": c.url,
            "host": host_of(c.url),
            "depth": c.depth,
            "state": SKIPPED if reason else QUEUED,
            "reason": reason or "",
            "redirect_hops": c.hops,
            "discovered_from": c.discovered_from,
            "created_at": now,
            "updated_at": now,
        }

    async def _insert_pg(
        self, session: AsyncSession, ctx: JobContext, rows: list[dict[str, Any]], now: datetime
    ) -> tuple[dict[str, str], dict[str, Any]]:
        found = await _PG_DISCOVER.fetch(session, {"job_id": ctx.id, "now": now, **_arrays(rows, _FRONTIER_COLUMNS)})
        inserted: dict[str, str] = {}
        existing: dict[str, Any] = {}
        for r in found:
            if r["state"] is not None:
                inserted[r["url_key"]] = r["state"]
            else:
                existing[r["url_key"]] = _Known(r["id"], r["url_key"], r["depth"])
        return inserted, existing

    async def _lower(
        self,
        session: AsyncSession,
        ctx: JobContext,
        nearer: dict[str, _Candidate],
        deltas: dict[str, int],
        result: Settled,
        *,
        budget_full: bool,
        now: datetime,
    ) -> None:
        """URLs found nearer a seed than recorded take the smaller depth, and so do their
        descendants: level by level along the outlinks of the fetched ones (a redirect's target
        at the redirect's depth, a page's links one deeper), as long as a level lowers any. A URL
        skipped for its depth and now within reach is queued again (not when the budget is spent,
        nor when the link that found it is out of scope for another reason, robots.txt say).
        Nothing fetched is fetched again: its outlinks say where its links lead. So every URL's
        depth is its shortest path through the whole graph, whatever order pages were fetched in."""
        level = {
            k: _Lowering(c.depth, c.discovered_from, c.reason is None and not budget_full) for k, c in nearer.items()
        }
        while level:
            below: dict[str, _Lowering] = {}
            for chunk in _chunks(sorted(level), CHUNK):
                for r in await self._lower_level(session, ctx, {k: level[k] for k in chunk}, now):
                    result.known[r.url_key] = r.depth
                    if r.requeued:
                        deltas["skipped"] -= 1
                        deltas["total"] += 1
                        deltas["pending"] += 1
                    if r.state == DONE and r.outlinks:
                        depth = r.depth + (0 if r.redirect else 1)
                        for key in r.outlinks:
                            seen = below.get(key)
                            if seen is None or seen.depth > depth:
                                below[key] = _Lowering(depth, r.url, not budget_full)
            level = below

    async def _lower_level(
        self, session: AsyncSession, ctx: JobContext, level: dict[str, _Lowering], now: datetime
    ) -> list[_Lowered]:
        max_depth = ctx.scope.max_depth
        if self.db.is_postgres:
            rows = await _PG_LOWER.fetch(
                session,
                {
                    "job_id": ctx.id,
                    "now": now,
                    "max_depth": max_depth,
                    "keys": list(level),
                    "depths": [x.depth for x in level.values()],
                    "froms": [x.discovered_from for x in level.values()],
                    "admits": [x.admit for x in level.values()],
                },
            )
            return [_Lowered(**dict(r)) for r in rows]
        found = await session.execute(
            select(
                URLS.c.id, URLS.c.url_key, URLS.c.url, URLS.c.depth, URLS.c.state, URLS.c.reason, URLS.c.outlinks,
                URLS.c.redirected_to,
            ).where(URLS.c.job_id == ctx.id, URLS.c.url_key.in_(list(level)))
        )  # fmt: skip
        lowered: list[_Lowered] = []
        changes: list[dict[str, Any]] = []
        for r in found:
            target = level[r.url_key]
            if r.depth <= target.depth:
                continue
            back = r.state == SKIPPED and r.reason == DEPTH and target.depth <= max_depth and target.admit
            state = QUEUED if back else r.state
            changes.append(
                {"b_id": r.id, "b_depth": target.depth, "b_from": target.discovered_from, "b_state": state,
                 "b_reason": "" if back else r.reason}
            )  # fmt: skip
            lowered.append(
                _Lowered(r.url_key, r.url, target.depth, state, back, r.outlinks, r.redirected_to is not None)
            )
        if changes:
            await session.execute(
                update(URLS)
                .where(URLS.c.id == bindparam("b_id"))
                .values(
                    depth=bindparam("b_depth"),
                    discovered_from=bindparam("b_from"),
                    state=bindparam("b_state"),
                    reason=bindparam("b_reason"),
                    updated_at=now,
                ),
                changes,
            )
        return lowered

    async def _count(
        self,
        session: AsyncSession,
        ctx: JobContext,
        deltas: dict[str, int],
        logs: list[tuple[str, str]],
        result: Settled,
        *,
        guard_budget: bool,
        now: datetime,
        fetched_waiting: Callable[[], int] = lambda: 0,
    ) -> None:
        cutoff = now - timedelta(seconds=self.progress_interval)
        job: Any
        if self.db.is_postgres:
            found = await _PG_COUNTERS.fetch(
                session,
                {
                    **_delta_params(deltas),
                    "job_id": ctx.id,
                    "now": now,
                    "cutoff": cutoff,
                    "guard": guard_budget and deltas["result"] > 0,
                },
            )
            job = _JobCounters(**dict(found[0])) if found else None
        else:
            counters = (
                update(JOBS)
                .where(JOBS.c.id == ctx.id)
                .values(
                    total_urls=JOBS.c.total_urls + deltas["total"],
                    completed_urls=JOBS.c.completed_urls + deltas["completed"],
                    failed_urls=JOBS.c.failed_urls + deltas["failed"],
                    pending_urls=JOBS.c.pending_urls + deltas["pending"],
                    skipped_urls=JOBS.c.skipped_urls + deltas["skipped"],
                    result_count=JOBS.c.result_count + deltas["result"],
                    **{f"changes_{change}": JOBS.c[f"changes_{change}"] + deltas[change] for change in CHANGES},
                    updated_at=now,
                    progress_event_at=_changed_at_if_older(JOBS.c.progress_event_at, cutoff, now),
                )
                .returning(*JOBS.c)
            )
            if guard_budget and deltas["result"]:
                counters = counters.where(JOBS.c.result_count + deltas["result"] <= JOBS.c.max_pages)
            job = (await session.execute(counters)).one_or_none()
        if job is None:
            raise _BudgetOverflow
        events = False
        if job.status == RUNNING and job.result_count >= job.max_pages:
            job = await self._skip_over_budget(session, ctx, job, logs, now)
        if job.status == RUNNING and job.pending_urls <= 0:
            await append_logs(session, ctx.id, logs, now)
            logs = []
            await finish_job(self.db, session, ctx.id, now)
            events = True
        elif job.status == RUNNING:
            slots = job.concurrency + min(fetched_waiting(), job.concurrency)
            result.tasks = await dispatch(session, ctx.id, slots, job.request_id or ctx.request_id, now, self.publisher)
            if job.progress_event_at == now:
                await append_event(session, ctx.id, "progress", event_payload(job), now)
                events = True
        elif job.status == CANCELLED:
            await cancel_queued(session, ctx.id, now)  # URLs this batch queued meanwhile
        await append_logs(session, ctx.id, logs, now)
        if events:
            await self.db.notify(session, job_channel(ctx.id))

    async def _skip_over_budget(
        self, session: AsyncSession, ctx: JobContext, job: Any, logs: list[tuple[str, str]], now: datetime
    ) -> Any:
        """The budget is spent: every URL still queued is skipped (in-flight tasks are dropped
        by their claim)."""
        dropped = await drop_queued(session, ctx.id, SKIPPED, BUDGET, now)
        if not dropped:
            return job
        logs.append(("info", f"Page budget of {job.max_pages} reached: {dropped} queued URL(s) skipped"))
        return (
            await session.execute(
                update(JOBS)
                .where(JOBS.c.id == ctx.id)
                .values(
                    total_urls=JOBS.c.total_urls - dropped,
                    pending_urls=JOBS.c.pending_urls - dropped,
                    skipped_urls=JOBS.c.skipped_urls + dropped,
                )
                .returning(*JOBS.c)
            )
        ).one()


# What a later crawl of a page rewrites of its document.
_UPDATED_COLUMNS = ("url", "host", "title", "markdown", "metadata", "word_count", "job_id", "etag", "last_modified",
                    "links")  # fmt: skip


def _document_values(ctx: JobContext, stored: list[tuple[Outcome, Any]], now: datetime) -> list[dict[str, Any]]:
    """The documents rows of the pages to store (`stored`: each page's outcome and URL row)."""
    values = []
    for o, row in stored:
        page = o.page
        assert page is not None
        metadata = {
            "description": page.description,
            "language": page.language,
            "canonical": page.canonical,
            "status_code": o.http_status,
            "depth": row.depth,
            "fetched_at": o.fetched_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "content_hash": page.content_hash,
            "word_count": page.word_count,
            "links": len(o.links),
            "rendered": o.rendered,
        }
        if o.body_hash:
            metadata["body_hash"] = o.body_hash
        values.append(
            {
                "id": str(uuid.uuid4()),
                "source_id": ctx.source_id,
                "url_key": url_key(row.url),
                "url": row.url,
                "host": host_of(row.url),
                "title": page.title,
                "markdown": page.markdown,
                "metadata": metadata,
                "content_hash": page.content_hash,
                "word_count": page.word_count,
                "job_id": ctx.id,
                "etag": o.etag,
                "last_modified": o.last_modified,
                "links": list(dict.fromkeys(o.links)),
                "created_at": now,
                "updated_at": now,
            }
        )
    return values


# The arrays the PostgreSQL statements unnest, by array name, and the row key each is made of.
_DOCUMENT_COLUMNS = {
    "ids": "id",
    "url_keys": "url_key",
    "urls": "url",
    "hosts": "host",
    "titles": "title",
    "markdowns": "markdown",
    "hashes": "content_hash",
    "word_counts": "word_count",
    "etags": "etag",
    "last_modifieds": "last_modified",
}
_OUTCOME_COLUMNS = {  # outcomes as Settler._plan records them
    "ids": "b_id",
    "states": "b_state",
    "reasons": "b_reason",
    "details": "b_detail",
    "statuses": "b_status",
    "redirects": "b_redirected_to",
    "outlinks": "b_outlinks",
    "attempts": "b_attempts",
    "next": "b_next_attempt_at",
    "changes": "b_change",
    "content_hashes": "b_content_hash",
    "previous_hashes": "b_previous_hash",
}
_FRONTIER_COLUMNS = {  # new frontier rows (Settler._frontier_row)
    "keys": "url_key",
    "urls": "url",
    "hosts": "host",
    "depths": "depth",
    "states": "state",
    "reasons": "reason",
    "hops": "redirect_hops",
    "froms": "discovered_from",
}


def _arrays(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> dict[str, list[Any]]:
    """`rows` as one array per column: {array name: [row[key] for each row]}."""
    return {name: [row[key] for row in rows] for name, key in columns.items()}


def _outcome_arrays(updates: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Outcomes as arrays; each URL's outlinks as one text of its keys joined by commas (an
    array of arrays would have to be rectangular), which the statements split again."""
    arrays = _arrays(updates, _OUTCOME_COLUMNS)
    arrays["outlinks"] = [None if keys is None else ",".join(keys) for keys in arrays["outlinks"]]
    return arrays


def _document_arrays(values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Documents rows as arrays; their metadata as JSON text (the statements cast it)."""
    return _arrays(values, _DOCUMENT_COLUMNS) | {
        "metadata": [json.dumps(v["metadata"]) for v in values],
        "links": ["\n".join(v["links"]) for v in values],
    }


def _delta_params(deltas: Mapping[str, int]) -> dict[str, int]:
    """The counters' deltas as the counter statements' parameters."""
    return {
        "dt": deltas["total"],
        "dc": deltas["completed"],
        "df": deltas["failed"],
        "dp": deltas["pending"],
        "ds": deltas["skipped"],
        "dr": deltas["result"],
        "dn": deltas[NEW],
        "dch": deltas[CHANGED],
        "du": deltas[UNCHANGED],
        "drm": deltas[REMOVED],
    }


def _leased_row(values: Sequence[Any], stored_known: bool) -> dict[str, Any]:
    """One of crawl_settle()'s leased tasks as the row Task.leased reads."""
    row = dict(zip(_LEASED_COLUMNS, values, strict=True))
    links = row["stored_links"]
    row["stored_links"] = None if links is None else links.split("\n") if links else []
    row["stored_known"] = stored_known
    return row


def _unknown(candidates: dict[str, _Candidate], known: Mapping[str, int]) -> dict[str, _Candidate]:
    """The candidates a worker does not know to be recorded at their depth or nearer."""
    return {k: c for k, c in candidates.items() if known.get(k, 1 << 30) > c.depth}


def _found_gone(o: Outcome) -> bool:
    """Whether the outcome removes the page's stored document (see Settler._plan)."""
    return o.stored is not None and (o.kind == REDIRECT or (o.kind == FAILED and o.http_status in GONE))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _add(candidates: dict[str, _Candidate], key: str, c: _Candidate) -> None:
    """Keep the nearest sighting of each URL (`key`: its URL key) in a batch."""
    seen = candidates.get(key)
    if seen is None or c.depth < seen.depth:
        candidates[key] = c


def _changed_at_if_older(column: Any, cutoff: datetime, now: datetime) -> Any:
    return case((column.is_(None), now), (column < cutoff, now), else_=column)
