"""The crawler's tables and the SQL of crawl jobs, job logs, events and documents.

Settling URLs (the hot path of the workers) lives in settle.py; dispatching tasks, shared by
both, is `dispatch` here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, cast

import asyncpg
import lz4.frame
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.db import TYPE_ANNOTATIONS, Database, JsonType, Page, PgStatement, utcnow
from libs.errors import Aborted, InvalidArgument, NotFound
from services.crawler import snippets
from services.crawler.frontier import BUDGET, host_of, url_key

log = logging.getLogger(__name__)

# Job statuses.
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

# Frontier states.
QUEUED = "queued"
DONE = "done"
SKIPPED = "skipped"
# FAILED and CANCELLED are shared with job statuses.

# What a crawl found of a document (crawl_urls.change).
NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
REMOVED = "removed"
CHANGES = (NEW, CHANGED, UNCHANGED, REMOVED)

# PostgreSQL makes a search snippet from this much of a document's Markdown (ts_headline reads
# all it is given); the best-matching chunk is looked for in it too.
SNIPPET_SOURCE_CHARS = 20000

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}


# A list of strings: an array on PostgreSQL, JSON on SQLite.
TEXTS = JSON().with_variant(ARRAY(Text), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = TYPE_ANNOTATIONS


class CrawlJobRow(Base):
    __tablename__ = "crawl_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(Text, default="")
    source_id: Mapped[str] = mapped_column(Text)
    source_type: Mapped[str] = mapped_column(String(32), default="web")
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]]
    source_snapshot: Mapped[dict[str, Any]]
    seed_urls: Mapped[list[Any]]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType)
    job_definition_id: Mapped[str | None] = mapped_column(String(128))
    execution_id: Mapped[str | None] = mapped_column(String(64))
    step_key: Mapped[str | None] = mapped_column(Text, unique=True)
    rerun_of: Mapped[str | None] = mapped_column(String(36))
    max_depth: Mapped[int] = mapped_column(Integer)
    max_pages: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    auth: Mapped[dict[str, Any] | None]
    request_id: Mapped[str] = mapped_column(Text, default="")
    total_urls: Mapped[int] = mapped_column(BigInteger, default=0)
    completed_urls: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_urls: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_urls: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped_urls: Mapped[int] = mapped_column(BigInteger, default=0)
    result_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # Its source had documents stored when the job was created.
    recrawl: Mapped[bool] = mapped_column(Boolean, default=False)
    changes_new: Mapped[int] = mapped_column(BigInteger, default=0)
    changes_changed: Mapped[int] = mapped_column(BigInteger, default=0)
    changes_unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    changes_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    progress_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class CrawlUrlRow(Base):
    __tablename__ = "crawl_urls"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    url_key: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    http_status: Mapped[int | None] = mapped_column(Integer)
    redirected_to: Mapped[str | None] = mapped_column(Text)
    document_id: Mapped[str | None] = mapped_column(String(36))
    # A fetched URL's outlinks: the URL keys its page links to (a redirect: its target's), so a
    # depth found shorter later is carried down to its descendants (settle.py, Settler._lower).
    outlinks: Mapped[list[str] | None] = mapped_column(TEXTS)
    # What the crawl found of a page's document: new, changed, unchanged or removed, with the
    # content hash it found and the one stored before it.
    change: Mapped[str | None] = mapped_column(String(16))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    previous_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_hops: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    publications: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    # The publisher (process) that took the lease last: when it goes silent, the pump republishes.
    leased_by: Mapped[str | None] = mapped_column(Text)
    discovered_from: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DocumentRow(Base):
    __tablename__ = "documents"

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    source_id: Mapped[str] = mapped_column(Text)
    url_key: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text, default="")
    markdown: Mapped[str] = mapped_column(Text, default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType)
    content_hash: Mapped[str] = mapped_column(String(64))
    word_count: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[str | None] = mapped_column(String(36))
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    # The canonical URLs the page links to: a 304 is expanded as if the page had been parsed.
    links: Mapped[list[str] | None] = mapped_column(TEXTS)
    version: Mapped[int] = mapped_column(Integer, default=1)
    removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DocumentVersionRow(Base):
    """A version of a document a change replaced."""

    __tablename__ = "document_versions"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text, default="")
    markdown: Mapped[str] = mapped_column(Text, default="")
    fetched_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class DocumentRemovalRow(Base):
    """A document a completed crawl did not reach, tombstoned."""

    __tablename__ = "document_removals"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    removed_at: Mapped[datetime]


class DocumentHtmlRow(Base):
    """The raw HTML a document was extracted from (an lz4 frame), for `reextract`."""

    __tablename__ = "document_html"

    source_id: Mapped[str] = mapped_column(Text, primary_key=True)
    url_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    charset: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[datetime]


class JobLogRow(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    level: Mapped[int] = mapped_column(SmallInteger)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class JobEventRow(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class HostSlotRow(Base):
    __tablename__ = "host_slots"

    host: Mapped[str] = mapped_column(Text, primary_key=True)
    next_at: Mapped[datetime]


class PublisherRow(Base):
    """A process that leases tasks, alive while its heartbeat is recent (see Heartbeat)."""

    __tablename__ = "crawl_publishers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    heartbeat_at: Mapped[datetime]


class CancelledExecutionRow(Base):
    __tablename__ = "cancelled_executions"

    execution_id: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    cancelled_at: Mapped[datetime]


class RobotsRow(Base):
    __tablename__ = "robots_cache"

    host: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text, default="")
    fetched_at: Mapped[datetime]


JOBS = cast(Table, CrawlJobRow.__table__)
URLS = cast(Table, CrawlUrlRow.__table__)
DOCUMENTS = cast(Table, DocumentRow.__table__)
LOGS = cast(Table, JobLogRow.__table__)
EVENTS = cast(Table, JobEventRow.__table__)
HOST_SLOTS = cast(Table, HostSlotRow.__table__)
ROBOTS_CACHE = cast(Table, RobotsRow.__table__)
PUBLISHERS = cast(Table, PublisherRow.__table__)
CANCELLED_EXECUTIONS = cast(Table, CancelledExecutionRow.__table__)
VERSIONS = cast(Table, DocumentVersionRow.__table__)
REMOVALS = cast(Table, DocumentRemovalRow.__table__)
HTML = cast(Table, DocumentHtmlRow.__table__)
# What a task carries of its URL's row (Task.leased).
LEASED = (URLS.c.id, URLS.c.url, URLS.c.depth, URLS.c.attempts, URLS.c.redirect_hops, URLS.c.document_id)


def dialect_insert(db: Database, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the database in use."""
    return (postgresql.insert if db.is_postgres else sqlite.insert)(table)


# Woken whenever a job leaves `running` (cancelled, completed, failed): workers drop cached statuses.
STATUS_CHANNEL = "crawl_job_status"


def job_channel(job_id: str) -> str:
    """The notifier channel woken when a job's events change."""
    return f"crawl_job_{job_id.replace('-', '')}"


def progress_of(job: Any) -> dict[str, Any]:
    total = int(job.total_urls)
    completed = int(job.completed_urls)
    return {
        "total_urls": total,
        "completed_urls": completed,
        "failed_urls": int(job.failed_urls),
        "pending_urls": int(job.pending_urls),
        "skipped_urls": int(job.skipped_urls),
        "percentage": round(completed / total * 100, 2) if total else 0.0,
    }


def event_payload(job: Any, **extra: Any) -> dict[str, Any]:
    return {
        "status": job.status,
        "progress": progress_of(job),
        "result_count": int(job.result_count),
        "changes": changes_of(job),
        **extra,
    }


class Stored(NamedTuple):
    """A page's document as stored, as a recrawl reads it before the page's fetch."""

    id: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    # Whether it keeps the page's links: only then can a 304 (or the same body) be expanded
    # without a parse, so only then are the validators sent.
    has_links: bool
    # The links, when read with it (None: to be looked up when needed).
    links: list[str] | None = None
    # The hash of the body it was parsed from (metadata.body_hash), when parsed as fetched.
    body_hash: str | None = None


# A leased task carries its page's stored links up to this many; a page with more has them
# looked up on a 304.
CARRIED_LINKS = 2_000


@dataclass(frozen=True)
class Task:
    """A URL to publish as a UrlTask, with its frontier row as leased (attempts None: not known)
    and, for a recrawl (`stored_known`), its page's stored document (None: no document)."""

    job_id: str
    url_id: int
    url: str
    depth: int
    request_id: str
    attempts: int | None = None
    redirect_hops: int = 0
    document_id: str | None = None
    stored_known: bool = False
    stored: Stored | None = None

    @classmethod
    def leased(cls, job_id: str, row: Any, request_id: str) -> Task:
        """The task of a row leased by dispatch or the pump (id, url, depth, attempts,
        redirect_hops, document_id; and with dispatch's stored_* columns, its stored document)."""
        known = bool(row.get("stored_known"))
        return cls(
            job_id,
            row["id"],
            row["url"],
            row["depth"],
            request_id,
            attempts=row["attempts"],
            redirect_hops=row["redirect_hops"],
            document_id=row["document_id"],
            stored_known=known,
            stored=stored_of(row) if known else None,
        )


def stored_of(row: Any) -> Stored | None:
    """The stored document of a leased row's stored_* columns (None: no document)."""
    if row.get("stored_id") is None:
        return None
    links = row.get("stored_links")
    return Stored(
        row["stored_id"],
        row["stored_hash"],
        row["stored_etag"],
        row["stored_last_modified"],
        bool(row["stored_has_links"]),
        None if links is None else list(links),
        row.get("stored_body_hash") or None,
    )


@dataclass
class JobSpec:
    """A crawl job to create."""

    name: str
    source_id: str
    source_type: str
    config: dict[str, Any]
    source_snapshot: dict[str, Any]
    auth: dict[str, Any] | None
    seed_urls: list[str]
    metadata: dict[str, Any]
    step_key: str | None = None
    request_id: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Created:
    """What create_jobs did: the jobs (created now, or found by step_key), their first tasks."""

    jobs: list[CrawlJobRow]
    tasks: list[Task]
    # The reason given when the specs' execution was cancelled: then no new job was created.
    cancelled: str | None = None


@dataclass
class ListFilter:
    status: str | None = None
    job_definition_id: str | None = None
    execution_id: str | None = None
    source_id: str | None = None


_TRANSIENT_STATES = ("40P01", "40001", "57P01", "57P02", "57P03", "08000", "08003", "08006")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a lost connection, a deadlock, a serialization failure (raised through
    SQLAlchemy, or by asyncpg itself for the statements sent straight to it)."""
    if isinstance(exc, ConnectionError | OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return exc.sqlstate in _TRANSIENT_STATES
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "pgcode", None) or getattr(getattr(exc.orig, "__cause__", None), "sqlstate", None)
        if code in _TRANSIENT_STATES:
            return True
        name = type(getattr(exc.orig, "__cause__", None) or exc.orig).__name__
        return "Connection" in name or "Interface" in name or "OperationalError" in type(exc).__name__
    return False


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError | asyncpg.PostgresError | asyncpg.InterfaceError) or is_transient(exc)


async def retrying(
    what: str,
    attempt: Callable[[], Awaitable[Any]],
    *,
    attempts: int = 12,
    on_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """Run a database unit of work again while it fails transiently (backoff up to 2 s).

    `on_error` is called with every database error, retried or not."""
    delay = 0.05
    for n in range(1, attempts + 1):
        try:
            return await attempt()
        except Exception as exc:
            if on_error is not None and is_database_error(exc):
                on_error(exc)
            if n == attempts or not is_transient(exc):
                raise
            log.warning("%s failed (%s); retrying", what, str(getattr(exc, "orig", exc)).splitlines()[0][:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")  # pragma: no cover


async def append_event(session: AsyncSession, job_id: str, type_: str, payload: dict[str, Any], now: datetime) -> None:
    await session.execute(EVENTS.insert().values(job_id=job_id, type=type_, payload=payload, created_at=now))


async def append_logs(session: AsyncSession, job_id: str, entries: Sequence[tuple[str, str]], now: datetime) -> None:
    if entries:
        await session.execute(
            LOGS.insert(),
            [{"job_id": job_id, "level": LEVELS[lvl], "message": msg, "created_at": now} for lvl, msg in entries],
        )


async def give_back_leases(db: Database, url_ids: Sequence[int]) -> int:
    """Leases whose tasks never reached the broker become unpublished again (state queued, lease
    cleared), so the pump's next round publishes them instead of waiting out the visibility
    timeout. A URL settled meanwhile is left alone. Returns how many were given back."""
    if not url_ids:
        return 0
    async with db.session() as session:
        given = await session.execute(
            update(URLS)
            .where(URLS.c.id.in_(list(url_ids)), URLS.c.state == QUEUED, URLS.c.published_at.is_not(None))
            .values(published_at=None)
        )
    return int(given.rowcount)  # type: ignore[attr-defined]


async def heartbeat(db: Database, publisher: str, now: datetime) -> None:
    """The publisher is alive at `now` (its row made again if the pump deleted it meanwhile)."""
    async with db.session() as session:
        beat = await session.execute(update(PUBLISHERS).where(PUBLISHERS.c.id == publisher).values(heartbeat_at=now))
        if not beat.rowcount:  # type: ignore[attr-defined]
            await session.execute(
                dialect_insert(db, PUBLISHERS)
                .values(id=publisher, heartbeat_at=now)
                .on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now})
            )


async def forget_publisher(db: Database, publisher: str) -> None:
    """A publisher that stopped with every task it leased published: nothing to republish."""
    async with db.session() as session:
        await session.execute(delete(PUBLISHERS).where(PUBLISHERS.c.id == publisher))


async def silent_publishers(session: AsyncSession, cutoff: datetime) -> list[str]:
    """The publishers whose last heartbeat is older than `cutoff` (dead, or cut off)."""
    rows = await session.execute(select(PUBLISHERS.c.id).where(PUBLISHERS.c.heartbeat_at < cutoff))
    return list(rows.scalars())


async def forget_silent_publishers(db: Database, publishers: Sequence[str], cutoff: datetime) -> int:
    """Delete the silent publishers none of whose leases is left (the pump republished them all);
    one that beat again meanwhile is kept. Returns how many went."""
    if not publishers:
        return 0
    held = select(URLS.c.id).where(
        URLS.c.state == QUEUED, URLS.c.published_at.is_not(None), URLS.c.leased_by == PUBLISHERS.c.id
    )
    async with db.session() as session:
        gone = await session.execute(
            delete(PUBLISHERS).where(
                PUBLISHERS.c.id.in_(list(publishers)), PUBLISHERS.c.heartbeat_at < cutoff, ~held.exists()
            )
        )
    return int(gone.rowcount)  # type: ignore[attr-defined]


async def give_back_every_lease(db: Database) -> int:
    """Every lease becomes unpublished again: at the start of a process whose queue is in memory
    (embedded mode), whatever was published before went with the previous process."""
    async with db.session() as session:
        given = await session.execute(
            update(URLS).where(URLS.c.state == QUEUED, URLS.c.published_at.is_not(None)).values(published_at=None)
        )
        await session.execute(delete(PUBLISHERS))
    return int(given.rowcount)  # type: ignore[attr-defined]


async def drop_queued(session: AsyncSession, job_id: str, state: str, reason: str, now: datetime) -> int:
    """Every URL of the job still queued becomes `state` (its lease gone); returns how many."""
    dropped = await session.execute(
        update(URLS)
        .where(URLS.c.job_id == job_id, URLS.c.state == QUEUED)
        .values(state=state, reason=reason, published_at=None, updated_at=now)
    )
    # The count alone: a job may have any number of URLs queued, and rows would each be built.
    return int(dropped.rowcount)  # type: ignore[attr-defined]


async def cancel_queued(session: AsyncSession, job_id: str, now: datetime) -> int:
    """A cancelled job's queued URLs are cancelled too, and no longer pending; returns how many."""
    dropped = await drop_queued(session, job_id, CANCELLED, "cancelled", now)
    if dropped:
        await session.execute(
            update(JOBS).where(JOBS.c.id == job_id).values(pending_urls=JOBS.c.pending_urls - dropped)
        )
    return dropped


# Session settings of every crawler connection to PostgreSQL. Its tables grow from nothing to
# many thousands of rows within a crawl, faster than autovacuum analyses them: a plan cached while
# a table was small (a sequential scan, say) would be kept as it grows, so each statement is
# planned for the table as it is (a fraction of a millisecond per statement). The exception is
# crawl_settle(), whose key lookups run on generic plans with sequential scans off (migration 0006).
PG_SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan"}

# The due URLs are picked and locked first (a materialised CTE; FOR UPDATE rechecks each one's
# state; one another transaction is changing is left for the next dispatch rather than waited
# on, as the caller holds the job's row lock), then updated by primary key. Written as `UPDATE
# ... WHERE id IN (subquery) AND state = 'queued' AND published_at IS NULL`, a young table's row
# estimates (1) led the planner to walk every unpublished URL and rerun the subquery for each:
# thousands of buffer reads per dispatch, over half of PostgreSQL's time in a crawl.
_PG_DISPATCH = PgStatement(
    """
    WITH due AS MATERIALIZED (
        SELECT id FROM crawl_urls
        WHERE job_id = :job_id AND state = 'queued' AND published_at IS NULL
          AND (next_attempt_at IS NULL OR next_attempt_at <= CAST(:now AS timestamptz))
        ORDER BY depth, id
        LIMIT greatest(0, :concurrency - (
            SELECT count(*) FROM crawl_urls WHERE job_id = :job_id AND state = 'queued' AND published_at IS NOT NULL))
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE crawl_urls u SET published_at = CAST(:now AS timestamptz), publications = u.publications + 1,
            leased_by = CAST(:leased_by AS text)
        FROM due WHERE u.id = due.id
        RETURNING u.id, u.url, u.url_key, u.depth, u.attempts, u.redirect_hops, u.document_id
    )
    SELECT l.id, l.url, l.depth, l.attempts, l.redirect_hops, l.document_id, j.recrawl AS stored_known,
           d.id AS stored_id, d.content_hash AS stored_hash, d.etag AS stored_etag,
           d.last_modified AS stored_last_modified, d.links IS NOT NULL AS stored_has_links,
           CASE WHEN cardinality(d.links) <= :carried_links THEN d.links END AS stored_links,
           d.metadata ->> 'body_hash' AS stored_body_hash
    FROM leased l JOIN crawl_jobs j ON j.id = :job_id
    LEFT JOIN LATERAL (
        SELECT id, content_hash, etag, last_modified, links, metadata FROM documents
        WHERE j.recrawl AND source_id = j.source_id AND url_key = l.url_key AND removed_at IS NULL LIMIT 1) d ON true
    """
)


async def dispatch(
    session: AsyncSession,
    job_id: str,
    concurrency: int,
    request_id: str,
    now: datetime,
    leased_by: str | None = None,
) -> list[Task]:
    """Lease up to `concurrency` tasks of a job in flight: the next due URLs, nearest seeds first,
    for the publisher `leased_by` (the process that will publish them). A recrawl's tasks carry
    their pages' stored documents, read in the same statement.

    Callers hold the job's row lock (or SQLite's single writer), so two dispatches of one job
    never both see the same free slots. One statement: the free slots are counted inside it."""
    if session.get_bind().dialect.name == "postgresql":
        leased = await _PG_DISPATCH.fetch(
            session,
            {
                "job_id": job_id,
                "concurrency": concurrency,
                "now": now,
                "leased_by": leased_by,
                "carried_links": CARRIED_LINKS,
            },
        )
        return [Task.leased(job_id, r, request_id) for r in leased]
    in_flight = (
        select(func.count())
        .select_from(URLS)
        .where(URLS.c.job_id == job_id, URLS.c.state == QUEUED, URLS.c.published_at.is_not(None))
        .scalar_subquery()
    )
    due = (
        select(URLS.c.id)
        .where(
            URLS.c.job_id == job_id,
            URLS.c.state == QUEUED,
            URLS.c.published_at.is_(None),
            or_(URLS.c.next_attempt_at.is_(None), URLS.c.next_attempt_at <= now),
        )
        .order_by(URLS.c.depth, URLS.c.id)
        .limit(func.max(0, concurrency - in_flight))
        .scalar_subquery()
    )
    rows = [
        dict(r._mapping)
        for r in await session.execute(
            update(URLS)
            .where(URLS.c.id.in_(due), URLS.c.state == QUEUED, URLS.c.published_at.is_(None))
            .values(published_at=now, publications=URLS.c.publications + 1, leased_by=leased_by)
            .returning(*LEASED, URLS.c.url_key)
        )
    ]
    if rows:
        await with_stored(session, job_id, rows)
    return [Task.leased(job_id, r, request_id) for r in rows]


async def with_stored(session: AsyncSession, job_id: str, rows: list[dict[str, Any]]) -> None:
    """A recrawl's stored documents of leased rows (with their url_key), as the stored_* columns
    Task.leased reads, in place, in one read: what _PG_DISPATCH joins (SQLite's dispatch and the
    pump's republished leases)."""
    job = (await session.execute(select(JOBS.c.source_id, JOBS.c.recrawl).where(JOBS.c.id == job_id))).one()
    if not job.recrawl:
        return
    docs = {
        d.url_key: d
        for d in await session.execute(
            select(
                DOCUMENTS.c.url_key, DOCUMENTS.c.id, DOCUMENTS.c.content_hash, DOCUMENTS.c.etag,
                DOCUMENTS.c.last_modified, DOCUMENTS.c.links, DOCUMENTS.c.metadata,
            ).where(
                DOCUMENTS.c.source_id == job.source_id,
                DOCUMENTS.c.url_key.in_([r["url_key"] for r in rows]),
                DOCUMENTS.c.removed_at.is_(None),
            )
        )
    }  # fmt: skip
    for row in rows:
        row["stored_known"] = True
        d = docs.get(row["url_key"])
        if d is None:
            continue
        links = d.links if d.links is not None and len(d.links) <= CARRIED_LINKS else None
        row |= {
            "stored_id": d.id, "stored_hash": d.content_hash, "stored_etag": d.etag,
            "stored_last_modified": d.last_modified, "stored_has_links": d.links is not None, "stored_links": links,
            "stored_body_hash": (d.metadata or {}).get("body_hash"),
        }  # fmt: skip


class CrawlStore:
    """Crawl jobs, their logs and events, documents: one unit of work per method."""

    def __init__(
        self,
        db: Database,
        *,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        publisher: str | None = None,
    ) -> None:
        self.db = db
        # The process that publishes the tasks the jobs it creates lease (see Heartbeat).
        self.publisher = publisher
        # A test hook: awaited inside create_jobs' transaction, once the jobs are inserted.
        self.before_commit = before_commit

    # ----------------------------------------------------------------------------- creating

    async def create_jobs(self, specs: Sequence[JobSpec]) -> Created:
        """Create jobs (or find those a replayed step already created, by step_key) with their
        seeds queued, in one transaction. Returns every job and the first tasks to publish.

        Jobs of an execution whose crawl jobs were cancelled are not created: this transaction
        and CancelCrawlJobs' are ordered (`_lock_executions`), so a cancel either comes first
        and is seen here, or comes after and cancels what this created."""
        now = utcnow()
        jobs: list[CrawlJobRow] = []
        tasks: list[Task] = []
        cancelled: str | None = None
        async with self.db.session() as session:
            stopped = await self._lock_executions(session, [s.metadata.get("execution_id") or "" for s in specs])
            for spec in specs:
                reason = stopped.get(spec.metadata.get("execution_id") or "")
                cancelled = reason if reason is not None else cancelled
                if spec.step_key is not None:
                    existing = (
                        await session.execute(select(CrawlJobRow).where(CrawlJobRow.step_key == spec.step_key))
                    ).scalar_one_or_none()
                    if existing is not None:
                        jobs.append(existing)
                        continue
                if reason is not None:
                    continue
                cfg = spec.config
                values = {
                    "id": spec.id,
                    "name": spec.name,
                    "source_id": spec.source_id,
                    "source_type": spec.source_type,
                    "status": RUNNING,
                    "config": cfg,
                    "source_snapshot": spec.source_snapshot,
                    "seed_urls": spec.seed_urls,
                    "metadata": spec.metadata,
                    "job_definition_id": spec.metadata.get("job_definition_id") or None,
                    "execution_id": spec.metadata.get("execution_id") or None,
                    "step_key": spec.step_key,
                    "rerun_of": spec.metadata.get("rerun_of") or None,
                    "max_depth": cfg["max_depth"],
                    "max_pages": cfg["max_pages"],
                    "concurrency": cfg["concurrency"],
                    "auth": spec.auth,
                    "request_id": spec.request_id,
                    "total_urls": len(spec.seed_urls),
                    "pending_urls": len(spec.seed_urls),
                    # A source with documents stored is recrawled: its pages are looked up before
                    # they are fetched (conditional requests; new, changed or unchanged).
                    "recrawl": DOCUMENTS.select()
                    .with_only_columns(DOCUMENTS.c.pk)
                    .where(DOCUMENTS.c.source_id == spec.source_id, DOCUMENTS.c.removed_at.is_(None))
                    .exists(),
                    "created_at": now,
                    "updated_at": now,
                    "started_at": now,
                }
                insert = dialect_insert(self.db, JOBS).values(**values)
                if spec.step_key is not None:
                    # A concurrent replay of the same step may be inserting it right now.
                    insert = insert.on_conflict_do_nothing(index_elements=["step_key"])
                created = (await session.execute(insert.returning(JOBS.c.id))).scalar_one_or_none()
                if created is None:
                    existing = (
                        await session.execute(select(CrawlJobRow).where(CrawlJobRow.step_key == spec.step_key))
                    ).scalar_one()
                    jobs.append(existing)
                    continue
                await session.execute(
                    URLS.insert(),
                    [
                        {
                            "job_id": spec.id,
                            "url_key": url_key(seed),
                            "url": seed,
                            "host": host_of(seed),
                            "depth": 0,
                            "state": QUEUED,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for seed in spec.seed_urls
                    ],
                )
                job = (await session.execute(select(CrawlJobRow).where(CrawlJobRow.id == spec.id))).scalar_one()
                await append_event(session, job.id, "created", event_payload(job), now)
                await append_event(session, job.id, "started", event_payload(job), now)
                await append_logs(
                    session,
                    job.id,
                    [("info", f"Crawl started: {len(spec.seed_urls)} seed URL(s): {', '.join(spec.seed_urls)}")],
                    now,
                )
                tasks.extend(await dispatch(session, job.id, job.concurrency, spec.request_id, now, self.publisher))
                await self.db.notify(session, job_channel(job.id))
                jobs.append(job)
            if self.before_commit is not None:
                await self.before_commit()
        return Created(jobs, tasks, cancelled)

    async def _lock_executions(self, session: AsyncSession, execution_ids: Sequence[str]) -> dict[str, str]:
        """Order this transaction with every other that creates or cancels crawl jobs of these
        executions, and return those cancelled (execution id -> reason). PostgreSQL: a
        transaction-scoped advisory lock per execution; SQLite runs one write transaction at a
        time anyway."""
        ids = sorted({i for i in execution_ids if i})
        if not ids:
            return {}
        if self.db.is_postgres:
            for execution_id in ids:  # sorted: two transactions never wait on each other's locks
                await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": execution_id})
        rows = await session.execute(
            select(CANCELLED_EXECUTIONS.c.execution_id, CANCELLED_EXECUTIONS.c.reason).where(
                CANCELLED_EXECUTIONS.c.execution_id.in_(ids)
            )
        )
        return {r.execution_id: r.reason for r in rows}

    async def rerun_job(self, job_id: str, request_id: str) -> tuple[CrawlJobRow, list[Task]]:
        original = await self.get_job(job_id)
        if original.status == RUNNING:
            raise Aborted(f"crawl job {job_id} is running: cancel it or wait for it to finish before a rerun")
        metadata = {
            "job_definition_id": original.metadata_.get("job_definition_id", ""),
            "rerun_of": original.id,
        }
        spec = JobSpec(
            name=original.name,
            source_id=original.source_id,
            source_type=original.source_type,
            config=dict(original.config),
            source_snapshot=dict(original.source_snapshot),
            auth=original.auth,
            seed_urls=list(original.seed_urls),
            metadata=metadata,
            request_id=request_id,
        )
        created = await self.create_jobs([spec])
        return created.jobs[0], created.tasks

    # ------------------------------------------------------------------------------ reading

    async def get_job(self, job_id: str) -> CrawlJobRow:
        async with self.db.read() as session:
            job = await session.get(CrawlJobRow, job_id)
        if job is None:
            raise NotFound(f"crawl job {job_id} not found")
        return job

    async def get_jobs(self, job_ids: Sequence[str]) -> list[CrawlJobRow]:
        async with self.db.read() as session:
            rows = (await session.execute(select(CrawlJobRow).where(CrawlJobRow.id.in_(job_ids)))).scalars().all()
        by_id = {r.id: r for r in rows}
        return [by_id[i] for i in job_ids if i in by_id]

    async def list_jobs(self, flt: ListFilter, pg: Page) -> tuple[list[CrawlJobRow], int]:
        conditions = []
        if flt.status:
            conditions.append(CrawlJobRow.status == flt.status)
        if flt.job_definition_id:
            conditions.append(CrawlJobRow.job_definition_id == flt.job_definition_id)
        if flt.execution_id:
            conditions.append(CrawlJobRow.execution_id == flt.execution_id)
        if flt.source_id:
            conditions.append(CrawlJobRow.source_id == flt.source_id)
        column = getattr(CrawlJobRow, pg.order_by)
        order = [column.desc() if pg.descending else column.asc(), CrawlJobRow.id]
        async with self.db.read() as session:
            total = (await session.execute(select(func.count()).select_from(JOBS).where(*conditions))).scalar_one()
            rows = (
                (
                    await session.execute(
                        select(CrawlJobRow).where(*conditions).order_by(*order).limit(pg.limit).offset(pg.offset)
                    )
                )
                .scalars()
                .all()
            )
        return list(rows), int(total)

    async def job_stats(self) -> dict[str, int]:
        async with self.db.read() as session:
            rows = await session.execute(select(JOBS.c.status, func.count()).group_by(JOBS.c.status))
            counts = {status: int(n) for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def events_after(self, job_id: str, after_id: int, limit: int = 500) -> list[JobEventRow]:
        async with self.db.read() as session:
            rows = await session.execute(
                select(JobEventRow)
                .where(JobEventRow.job_id == job_id, JobEventRow.id > after_id)
                .order_by(JobEventRow.id)
                .limit(limit)
            )
            return list(rows.scalars().all())

    async def job_with_last_event(self, job_id: str) -> tuple[CrawlJobRow, int]:
        """The job and the id of its last event, read together."""
        async with self.db.read() as session:
            job = await session.get(CrawlJobRow, job_id)
            if job is None:
                raise NotFound(f"crawl job {job_id} not found")
            last = (await session.execute(select(func.max(EVENTS.c.id)).where(EVENTS.c.job_id == job_id))).scalar_one()
        return job, int(last or 0)

    async def list_logs(self, job_id: str, min_level: int, ascending: bool, pg: Page) -> tuple[list[JobLogRow], int]:
        await self.get_job(job_id)
        conditions = [JobLogRow.job_id == job_id, JobLogRow.level >= min_level]
        async with self.db.read() as session:
            total = (await session.execute(select(func.count()).select_from(LOGS).where(*conditions))).scalar_one()
            rows = await session.execute(
                select(JobLogRow)
                .where(*conditions)
                .order_by(JobLogRow.id.asc() if ascending else JobLogRow.id.desc())
                .limit(pg.limit)
                .offset(pg.offset)
            )
            return list(rows.scalars().all()), int(total)

    async def list_urls(self, job_id: str, state: str | None, reason: str, pg: Page) -> tuple[list[CrawlUrlRow], int]:
        await self.get_job(job_id)
        conditions = [CrawlUrlRow.job_id == job_id]
        if state:
            conditions.append(CrawlUrlRow.state == state)
        if reason:
            conditions.append(CrawlUrlRow.reason == reason)
        async with self.db.read() as session:
            total = (await session.execute(select(func.count()).select_from(URLS).where(*conditions))).scalar_one()
            rows = await session.execute(
                select(CrawlUrlRow).where(*conditions).order_by(CrawlUrlRow.id).limit(pg.limit).offset(pg.offset)
            )
            return list(rows.scalars().all()), int(total)

    # ----------------------------------------------------------------------------- changing

    async def cancel_job(self, job_id: str, reason: str = "cancelled") -> CrawlJobRow:
        return await retrying("cancelling a job", lambda: self._cancel_job(job_id, reason))  # type: ignore[no-any-return]

    async def _cancel_job(self, job_id: str, reason: str) -> CrawlJobRow:
        async with self.db.session() as session:
            job = await self._cancel(session, job_id, reason)
            if job is None:
                current = await session.get(CrawlJobRow, job_id)
                if current is None:
                    raise NotFound(f"crawl job {job_id} not found")
                raise Aborted(f"crawl job {job_id} is {current.status}: only a running job can be cancelled")
        return job

    async def cancel_execution(self, execution_id: str, reason: str) -> list[str]:
        return await retrying("cancelling jobs", lambda: self._cancel_execution(execution_id, reason))  # type: ignore[no-any-return]

    async def _cancel_execution(self, execution_id: str, reason: str) -> list[str]:
        """Cancel the execution's running jobs, and mark it so no job of it is created later."""
        async with self.db.session() as session:
            await self._lock_executions(session, [execution_id])
            await session.execute(
                dialect_insert(self.db, CANCELLED_EXECUTIONS)
                .values(execution_id=execution_id, reason=reason, cancelled_at=utcnow())
                .on_conflict_do_nothing(index_elements=["execution_id"])
            )
            ids = (
                (
                    await session.execute(
                        select(JOBS.c.id)
                        .where(JOBS.c.execution_id == execution_id, JOBS.c.status == RUNNING)
                        .order_by(JOBS.c.id)
                    )
                )
                .scalars()
                .all()
            )
            cancelled = []
            for job_id in ids:
                if await self._cancel(session, job_id, reason) is not None:
                    cancelled.append(job_id)
        return cancelled

    async def fail_job(self, job_id: str, error: str) -> bool:
        """Fail a running job that cannot run (its stored config is unusable), as a cancel
        does: its queued URLs are cancelled, one `failed` event. False if it was not running."""

        async def fail() -> bool:
            async with self.db.session() as session:
                return await self._stop(session, job_id, FAILED, error) is not None

        return await retrying("failing a job", fail)  # type: ignore[no-any-return]

    async def _cancel(self, session: AsyncSession, job_id: str, reason: str) -> CrawlJobRow | None:
        return await self._stop(session, job_id, CANCELLED, reason)

    async def _stop(self, session: AsyncSession, job_id: str, status: str, reason: str) -> CrawlJobRow | None:
        """Compare-and-set running -> `status` (cancelled or failed); queued URLs become
        cancelled; one event."""
        now = utcnow()
        claimed = (
            await session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING)
                .values(status=status, error=reason, completed_at=now, updated_at=now)
                .returning(JOBS.c.id)
            )
        ).scalar_one_or_none()
        if claimed is None:
            return None
        dropped = await cancel_queued(session, job_id, now)
        job = (
            await session.execute(
                select(CrawlJobRow).where(CrawlJobRow.id == job_id).execution_options(populate_existing=True)
            )
        ).scalar_one()
        await append_event(session, job_id, status, event_payload(job, error=reason), now)
        await self.db.notify(session, STATUS_CHANNEL)
        if status == CANCELLED:
            entry = ("warn", f"Crawl cancelled ({reason}): {dropped} queued URL(s) dropped")
        else:
            entry = ("error", f"Crawl failed: {reason}; {dropped} queued URL(s) dropped")
        await append_logs(session, job_id, [entry], now)
        await self.db.notify(session, job_channel(job_id))
        return job

    async def delete_job(self, job_id: str) -> None:
        async with self.db.session() as session:
            job = await session.get(CrawlJobRow, job_id)
            if job is None:
                raise NotFound(f"crawl job {job_id} not found")
            if job.status == RUNNING:
                raise Aborted(f"crawl job {job_id} is running: cancel it before deleting it")
            for table in (EVENTS, LOGS, URLS):
                await session.execute(delete(table).where(table.c.job_id == job_id))
            await session.execute(update(DOCUMENTS).where(DOCUMENTS.c.job_id == job_id).values(job_id=None))
            await session.execute(delete(JOBS).where(JOBS.c.id == job_id))

    # ---------------------------------------------------------------------------- documents

    def _document_filters(self, source_id: str, job_id: str, include_removed: bool) -> list[Any]:
        conditions: list[Any] = []
        if source_id:
            conditions.append(DocumentRow.source_id == source_id)
        if job_id:
            conditions.append(
                DocumentRow.id.in_(
                    select(URLS.c.document_id).where(URLS.c.job_id == job_id, URLS.c.document_id.is_not(None))
                )
            )
        if not include_removed:
            conditions.append(DocumentRow.removed_at.is_(None))
        return conditions

    async def list_documents(
        self, source_id: str, job_id: str, pg: Page, *, include_removed: bool = False
    ) -> tuple[list[DocumentRow], int]:
        conditions = self._document_filters(source_id, job_id, include_removed)
        column = getattr(DocumentRow, pg.order_by)
        columns = _LISTED
        async with self.db.read() as session:
            total = (await session.execute(select(func.count()).select_from(DOCUMENTS).where(*conditions))).scalar_one()
            rows = await session.execute(
                select(*columns)
                .where(*conditions)
                .order_by(column.desc() if pg.descending else column.asc(), DocumentRow.pk)
                .limit(pg.limit)
                .offset(pg.offset)
            )
            return [_document(r) for r in rows], int(total)

    async def get_document(self, document_id: str) -> DocumentRow:
        async with self.db.read() as session:
            row = (await session.execute(select(DocumentRow).where(DocumentRow.id == document_id))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"document {document_id} not found")
        return row

    async def document_heads(self, document_ids: Sequence[str], size: int) -> dict[str, tuple[str, str]]:
        """Each document's URL and the first `size` characters of its Markdown (what a search
        snippet is made from), by id."""
        if not document_ids:
            return {}
        async with self.db.read() as session:
            rows = await session.execute(
                select(DOCUMENTS.c.id, DOCUMENTS.c.url, func.substr(DOCUMENTS.c.markdown, 1, size)).where(
                    DOCUMENTS.c.id.in_(list(document_ids))
                )
            )
            return {r[0]: (r[1], r[2] or "") for r in rows}

    async def source_documents(
        self, source_id: str, *, markdown: bool, batch: int = 100
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A source's current documents in URL order, `batch` at a time, each batch read on its own
        (keyset paging: no transaction or cursor is held while the caller writes one out): id,
        url, title, description and, with `markdown`, the Markdown."""
        columns = [DOCUMENTS.c.pk, DOCUMENTS.c.id, DOCUMENTS.c.url, DOCUMENTS.c.title, DOCUMENTS.c.metadata]
        if markdown:
            columns.append(DOCUMENTS.c.markdown)
        after: tuple[str, int] | None = None
        while True:
            query = select(*columns).where(DOCUMENTS.c.source_id == source_id, DOCUMENTS.c.removed_at.is_(None))
            if after is not None:
                query = query.where(
                    or_(DOCUMENTS.c.url > after[0], (DOCUMENTS.c.url == after[0]) & (DOCUMENTS.c.pk > after[1]))
                )
            async with self.db.read() as session:
                rows = (await session.execute(query.order_by(DOCUMENTS.c.url, DOCUMENTS.c.pk).limit(batch))).all()
            if not rows:
                return
            yield [
                {
                    "id": r.id,
                    "url": r.url,
                    "title": r.title or "",
                    "description": str((r.metadata or {}).get("description") or ""),
                    "markdown": r.markdown if markdown else "",
                }
                for r in rows
            ]
            if len(rows) < batch:
                return
            after = (rows[-1].url, rows[-1].pk)

    async def count_source_documents(self, source_id: str) -> tuple[int, list[str]]:
        """How many current documents a source has, and its hosts (most documents first, at most 3)."""
        scope = [DOCUMENTS.c.source_id == source_id, DOCUMENTS.c.removed_at.is_(None)]
        async with self.db.read() as session:
            count = (await session.execute(select(func.count()).select_from(DOCUMENTS).where(*scope))).scalar_one()
            hosts = await session.execute(
                select(DOCUMENTS.c.host)
                .where(*scope)
                .group_by(DOCUMENTS.c.host)
                .order_by(func.count().desc(), DOCUMENTS.c.host)
                .limit(3)
            )
            return int(count), [h for (h,) in hosts if h]

    async def list_job_changes(self, job_id: str, change: str | None, pg: Page) -> tuple[list[dict[str, Any]], int]:
        """What a crawl job found of its source's documents: its URLs' labels (in frontier order),
        then the documents it removed because it did not reach them (by URL)."""
        await self.get_job(job_id)
        labelled = select(
            URLS.c.url, URLS.c.document_id, URLS.c.change, URLS.c.content_hash, URLS.c.previous_hash,
            literal_column("0").label("part"), URLS.c.id.label("ord"),
        ).where(URLS.c.job_id == job_id, URLS.c.change.is_not(None))  # fmt: skip
        unreached = select(
            REMOVALS.c.url, REMOVALS.c.document_id, literal_column(f"'{REMOVED}'").label("change"),
            REMOVALS.c.content_hash, REMOVALS.c.content_hash.label("previous_hash"),
            literal_column("1").label("part"), literal_column("0").label("ord"),
        ).where(REMOVALS.c.job_id == job_id)  # fmt: skip
        if change:
            labelled = labelled.where(URLS.c.change == change)
        parts = [labelled] if change and change != REMOVED else [labelled, unreached]
        both = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        async with self.db.read() as session:
            total = (await session.execute(select(func.count()).select_from(both))).scalar_one()
            rows = await session.execute(
                select(both).order_by(both.c.part, both.c.ord, both.c.url).limit(pg.limit).offset(pg.offset)
            )
            return [dict(r._mapping) for r in rows], int(total)

    async def list_versions(self, document_id: str, pg: Page) -> tuple[list[DocumentVersionRow], int]:
        """A document's versions, newest first: the current one, then those kept before it."""
        doc = await self.get_document(document_id)
        kept_before = VERSIONS.c.document_id == document_id
        async with self.db.read() as session:
            kept = (await session.execute(select(func.count()).select_from(VERSIONS).where(kept_before))).scalar_one()
            listed = [_current_version(doc)] if pg.offset == 0 else []
            limit = pg.limit - len(listed)
            if limit > 0:
                rows = await session.execute(
                    select(DocumentVersionRow)
                    .where(DocumentVersionRow.document_id == document_id)
                    .order_by(DocumentVersionRow.version.desc())
                    .limit(limit)
                    .offset(max(pg.offset - 1, 0))
                )
                listed.extend(rows.scalars().all())
        return listed, int(kept) + 1

    async def get_version(self, document_id: str, version: int, field: str = "version") -> DocumentVersionRow:
        """One version of a document, with its Markdown. `field` names the request field the
        version came from in errors."""
        doc = await self.get_document(document_id)
        if version < 1:
            raise InvalidArgument.field(field, "must be 1 or more")
        if version > doc.version:
            raise InvalidArgument.field(field, f"must be at most {doc.version}, the document's current version")
        if version == doc.version:
            return _current_version(doc)
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(DocumentVersionRow).where(
                        DocumentVersionRow.document_id == document_id, DocumentVersionRow.version == version
                    )
                )
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"version {version} of document {document_id} is no longer kept")
        return row

    async def search_documents(
        self, query: str, source_id: str, job_id: str, limit: int, offset: int, *, include_removed: bool = False
    ) -> tuple[list[tuple[DocumentRow, str]], int]:
        """Full-text search over title and content, best matches first, with a snippet."""
        conditions = self._document_filters(source_id, job_id, include_removed)
        columns = _LISTED
        async with self.db.read() as session:
            if self.db.is_postgres:
                tsquery = func.websearch_to_tsquery(literal_column("'english'"), query)
                search: Any = literal_column("documents.search")
                match = search.op("@@")(tsquery)
                total = (
                    await session.execute(select(func.count()).select_from(DOCUMENTS).where(match, *conditions))
                ).scalar_one()
                ranked = (
                    select(*columns, func.ts_rank(search, tsquery).label("rank"))
                    .where(match, *conditions)
                    .order_by(text("rank DESC"), DocumentRow.pk)
                    .limit(limit)
                    .offset(offset)
                    .subquery()
                )
                snippet = func.ts_headline(
                    literal_column("'english'"),
                    func.left(DOCUMENTS.c.markdown, SNIPPET_SOURCE_CHARS),
                    tsquery,
                    f"MaxFragments=2, MinWords=5, MaxWords=25, StartSel={snippets.START}, StopSel={snippets.STOP}",
                )
                rows = await session.execute(
                    select(ranked, snippet.label("snippet"))
                    .join(DOCUMENTS, DOCUMENTS.c.pk == ranked.c.pk)
                    .order_by(ranked.c.rank.desc(), ranked.c.pk)
                )
            else:
                fts = table("documents_fts", column("rowid"), column("documents_fts"))
                joined = DOCUMENTS.join(fts, DOCUMENTS.c.pk == fts.c.rowid)
                match = fts.c.documents_fts.op("MATCH")(_fts5_query(query))
                total = (
                    await session.execute(select(func.count()).select_from(joined).where(match, *conditions))
                ).scalar_one()
                rows = await session.execute(
                    select(*columns, _FTS5_SNIPPET.label("snippet"))
                    .select_from(joined)
                    .where(match, *conditions)
                    .order_by(literal_column("bm25(documents_fts, 10.0, 1.0)"), DOCUMENTS.c.pk)
                    .limit(limit)
                    .offset(offset)
                )
            return [(_document(r), snippets.plain_snippet(r.snippet or "")) for r in rows], int(total)


# Matches between the marks plain_snippet turns into ** once the Markdown around them is gone.
_FTS5_SNIPPET: Any = literal_column(f"snippet(documents_fts, 1, '{snippets.START}', '{snippets.STOP}', '…', 16)")


def _fts5_query(query: str) -> str:
    """User words as an FTS5 query: every word must appear. Each word is an FTS5 string (a double
    quote inside doubled), so no character of the user's is FTS5 syntax; a word without a token
    (punctuation only) matches nothing, as on PostgreSQL."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query.split())


# The columns of a document in lists: without its Markdown and links (any size).
_LISTED = [c for c in DOCUMENTS.c if c.name not in ("markdown", "links")]


def _current_version(doc: DocumentRow) -> DocumentVersionRow:
    """A document's current content as a version (kept versions took its update time as theirs)."""
    return DocumentVersionRow(
        document_id=doc.id, version=doc.version or 1, content_hash=doc.content_hash, title=doc.title,
        markdown=doc.markdown, fetched_at=doc.updated_at, created_at=doc.updated_at,
    )  # fmt: skip


def _document(row: Any) -> DocumentRow:
    mapping = row._mapping
    doc = DocumentRow()
    for col in DOCUMENTS.c:
        if col.name in mapping:
            setattr(doc, "metadata_" if col.name == "metadata" else col.name, mapping[col.name])
    if "markdown" not in mapping:
        doc.markdown = ""
    return doc


async def seed_summary(session: AsyncSession, job_id: str) -> str:
    rows = await session.execute(
        select(URLS.c.url, URLS.c.state, URLS.c.reason, URLS.c.http_status, URLS.c.detail)
        .where(URLS.c.job_id == job_id, URLS.c.depth == 0)
        .order_by(URLS.c.id)
        .limit(5)
    )
    parts = []
    for r in rows:
        why = r.reason or r.state
        if r.http_status:
            why += f" {r.http_status}"
        if r.detail:
            why += f": {r.detail}"
        parts.append(f"{r.url} ({why})")
    return "; ".join(parts)


async def finish_job(db: Database, session: AsyncSession, job_id: str, now: datetime) -> str | None:
    """Compare-and-set a running job with nothing pending to completed, or failed when it
    stored no page. Appends the one terminal event. Returns the new status, None if another
    transaction got there first."""
    stored = (await session.execute(select(JOBS.c.result_count).where(JOBS.c.id == job_id))).scalar_one_or_none()
    if stored is None:
        return None
    status, error = COMPLETED, ""
    if not stored:
        status, error = FAILED, f"no seed produced a page: {await seed_summary(session, job_id)}"
    done = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING, JOBS.c.pending_urls <= 0)
            .values(status=status, error=error, completed_at=now, updated_at=now)
            .returning(*JOBS.c)
        )
    ).one_or_none()
    if done is None:
        return None
    if status == COMPLETED and await _removed_unreached(session, done, now):
        done = (await session.execute(select(*JOBS.c).where(JOBS.c.id == job_id))).one()
    if status == COMPLETED:
        # The site's template, seen across the source's pages now that all are stored.
        from services.crawler.site_template import drop_site_template

        await drop_site_template(session, DOCUMENTS, done.source_id)
    await append_event(session, job_id, status, event_payload(done, error=error) if error else event_payload(done), now)
    counts = progress_of(done)
    changes = changes_of(done)
    message = (
        f"Crawl {status}: {done.result_count} page(s) stored ({changes[NEW]} new, {changes[CHANGED]} changed, "
        f"{changes[UNCHANGED]} unchanged, {changes[REMOVED]} removed), {counts['completed_urls']}/"
        f"{counts['total_urls']} URLs settled ({counts['failed_urls']} failed), {counts['skipped_urls']} skipped"
    )
    await append_logs(
        session, job_id, [("info" if status == COMPLETED else "error", message + (f"; {error}" if error else ""))], now
    )
    await db.notify(session, job_channel(job_id))
    await db.notify(session, STATUS_CHANNEL)
    return status


async def _removed_unreached(session: AsyncSession, job: Any, now: datetime) -> int:
    """A crawl that completed without hitting its page budget saw the whole source: every earlier
    document of it whose URL the crawl did not reach is removed (tombstoned, and recorded as this
    job's removal). Returns how many."""
    budget_hit = (
        job.result_count >= job.max_pages
        or (
            await session.execute(
                select(URLS.c.id)
                .where(URLS.c.job_id == job.id, URLS.c.state == SKIPPED, URLS.c.reason == BUDGET)
                .limit(1)
            )
        ).first()
    )
    if budget_hit:
        return 0
    reached = select(URLS.c.id).where(URLS.c.job_id == job.id, URLS.c.url_key == DOCUMENTS.c.url_key).exists()
    gone = (
        await session.execute(
            select(DOCUMENTS.c.id, DOCUMENTS.c.url, DOCUMENTS.c.content_hash).where(
                DOCUMENTS.c.source_id == job.source_id, DOCUMENTS.c.removed_at.is_(None), ~reached
            )
        )
    ).all()
    if not gone:
        return 0
    await session.execute(
        REMOVALS.insert(),
        [
            {"job_id": job.id, "document_id": r.id, "url": r.url, "content_hash": r.content_hash, "removed_at": now}
            for r in gone
        ],
    )
    ids = [r.id for r in gone]
    for start in range(0, len(ids), 1000):
        await session.execute(
            update(DOCUMENTS).where(DOCUMENTS.c.id.in_(ids[start : start + 1000])).values(removed_at=now)
        )
    await session.execute(
        update(JOBS).where(JOBS.c.id == job.id).values(changes_removed=JOBS.c.changes_removed + len(gone))
    )
    await append_logs(session, job.id, [("info", f"{len(gone)} document(s) not found by this crawl removed")], now)
    return len(gone)


@dataclass(frozen=True)
class Html:
    """A fetched page's HTML to keep: `replace` it when the page's document was (re)written, else
    only fill a gap (an unchanged page whose document was stored before HTML was kept)."""

    url: str
    body: bytes
    charset: str | None
    fetched_at: datetime
    replace: bool


# Pages whose HTML is compressed off the event loop (lz4 does some 500 MB/s: 1 MB is 2 ms).
_COMPRESS_INLINE = 256 * 1024


async def compress(body: bytes) -> bytes:
    if len(body) <= _COMPRESS_INLINE:
        return lz4.frame.compress(body)
    return await asyncio.to_thread(lz4.frame.compress, body)


def decompress(body: bytes) -> bytes:
    return lz4.frame.decompress(body)


# PostgreSQL: one statement a batch, on an autocommit connection (no begin and commit).
_PG_KEEP_HTML = {
    replace: PgStatement(
        """
        INSERT INTO document_html (source_id, url_key, body, charset, size, fetched_at)
        SELECT :source_id, k, b, c, n, f
        FROM unnest(CAST(:keys AS text[]), CAST(:bodies AS bytea[]), CAST(:charsets AS text[]),
                    CAST(:sizes AS int[]), CAST(:fetched AS timestamptz[])) AS t(k, b, c, n, f)
        ORDER BY k
        ON CONFLICT (source_id, url_key) DO """
        + (
            "UPDATE SET body = EXCLUDED.body, charset = EXCLUDED.charset, size = EXCLUDED.size,"
            " fetched_at = EXCLUDED.fetched_at"
            if replace
            else "NOTHING"
        )
    )
    for replace in (True, False)
}


async def keep_html(db: Database, source_id: str, pages: Sequence[Html]) -> None:
    """Keep the pages' raw HTML, lz4-compressed, under their documents' keys (one statement for
    those replaced, one for those filled in)."""
    for replace in (True, False):
        # By key, the last of a key winning: one statement may not update a row twice.
        rows: dict[str, dict[str, Any]] = {}
        for p in pages:
            if p.replace is replace:
                key = url_key(p.url)
                rows[key] = {
                    "source_id": source_id,
                    "url_key": key,
                    "body": await compress(p.body),
                    "charset": p.charset,
                    "size": len(p.body),
                    "fetched_at": p.fetched_at,
                }
        if not rows:
            continue
        ordered = [rows[k] for k in sorted(rows)]  # the order rows are locked in: no deadlock
        if db.is_postgres:
            params = {
                "source_id": source_id,
                "keys": [r["url_key"] for r in ordered],
                "bodies": [r["body"] for r in ordered],
                "charsets": [r["charset"] for r in ordered],
                "sizes": [r["size"] for r in ordered],
                "fetched": [r["fetched_at"] for r in ordered],
            }
            async with db.autocommit() as connection:
                await _PG_KEEP_HTML[replace].fetch_on(connection, params)
            continue
        insert = dialect_insert(db, HTML)
        if replace:
            excluded = insert.excluded
            insert = insert.on_conflict_do_update(
                index_elements=["source_id", "url_key"],
                set_={name: excluded[name] for name in ("body", "charset", "size", "fetched_at")},
            )
        else:
            insert = insert.on_conflict_do_nothing(index_elements=["source_id", "url_key"])
        async with db.session() as session:
            await session.execute(insert, ordered)


def changes_of(job: Any) -> dict[str, int]:
    """A job's change counts, by change."""
    return {change: int(getattr(job, f"changes_{change}") or 0) for change in CHANGES}


def lease_cutoff(now: datetime, visibility_timeout: float) -> datetime:
    return now - timedelta(seconds=visibility_timeout)
