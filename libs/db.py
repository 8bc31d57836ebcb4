"""Database access: PostgreSQL (asyncpg, one schema per service) or SQLite (aiosqlite, one file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, TypeDecorator, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_NOTIFY_KEY = "quaero_notify"


def _sqlite_connect_hook(readonly: bool):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how a transaction starts (see below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    return on_connect


class Notifier:
    """Wakes waiters on a channel: LISTEN/NOTIFY on PostgreSQL, an in-process signal on SQLite.

    Waiters must not rely on it alone: they re-check the database on a timeout as well, so a lost
    notification (a dropped LISTEN connection) costs latency, never correctness.
    """

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def _fire(self, channel: str) -> None:
        for ev in list(self._events.get(channel, ())):
            ev.set()

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Event]:
        ev = asyncio.Event()
        self._events[channel].add(ev)
        try:
            yield ev
        finally:
            self._events[channel].discard(ev)
            if not self._events[channel]:
                self._events.pop(channel, None)

    async def start(self) -> None:  # pragma: no cover - overridden where there is work to do
        return None

    async def close(self) -> None:
        return None


class _PgNotifier(Notifier):
    """A dedicated asyncpg connection LISTENing on the channels someone is subscribed to.

    Channels come and go (one per watched execution or crawl job): the first subscriber of a
    channel LISTENs, the last one to leave UNLISTENs, so the connection never accumulates them."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        # Subscribers per channel. Changed without awaiting, so a cancelled subscriber can never
        # leave a count behind; _apply() then brings the connection in line under the lock.
        self._subscribers: dict[str, int] = {}
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one operation at a time on the connection
        self._closed = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="pg-notifier")

    def _on_notify(self, _conn: Any, _pid: int, channel: str, _payload: str) -> None:
        self._fire(channel)

    async def _apply(self, channel: str) -> None:
        """LISTEN or UNLISTEN `channel` as its subscribers require (both are idempotent)."""
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return  # the keeper LISTENs to every wanted channel when it reconnects
            if channel in self._subscribers:
                await conn.add_listener(channel, self._on_notify)
            else:
                await conn.remove_listener(channel, self._on_notify)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Event]:
        self._subscribers[channel] = self._subscribers.get(channel, 0) + 1
        try:
            try:
                await self._apply(channel)
            except Exception:  # the keeper reconnects; waiters time out and re-check meanwhile
                log.debug("LISTEN %s failed", channel, exc_info=True)
            async with super().subscribe(channel) as ev:
                yield ev
        finally:
            left = self._subscribers.get(channel, 0) - 1
            if left > 0:
                self._subscribers[channel] = left
            else:
                self._subscribers.pop(channel, None)
                try:
                    await self._apply(channel)
                except Exception:  # a broken connection listens to nothing once replaced
                    log.debug("UNLISTEN %s failed", channel, exc_info=True)

    async def _keep_connected(self) -> None:
        import asyncpg

        while not self._closed:
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                async with self._lock:
                    self._conn = conn
                    for channel in list(self._subscribers):
                        await conn.add_listener(channel, self._on_notify)
                # Anything published while we were disconnected: wake everyone to re-check.
                for channel in list(self._events):
                    self._fire(channel)
                while not lost.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), timeout=5)
                    except TimeoutError:
                        try:
                            async with self._lock:  # never beside a LISTEN on the same connection
                                await conn.execute("SELECT 1")
                        except Exception:
                            break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("notifier connection failed; retrying", exc_info=True)
            async with self._lock:
                self._conn = None
            if not self._closed:
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        self._closed = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


class Database:
    """Engines and sessions for one service's data.

    `session()` is a write transaction (on SQLite: the single writer connection, BEGIN IMMEDIATE,
    so there is never "database is locked"); `read()` is a read-only transaction that runs
    concurrently with writers.
    """

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        pool_size: int = 10,
        pre_ping: bool = True,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        """`pre_ping=False` saves a round trip per checkout for callers that retry on a lost
        connection themselves; `server_settings` are extra PostgreSQL session settings."""
        if not _IDENT.match(schema):
            raise ValueError(f"bad schema name {schema!r}")
        self.url = url
        self.schema = schema
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.is_postgres = self.dialect == "postgresql"
        if self.is_postgres:
            self._writer = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=pre_ping,
                pool_recycle=1800,
                connect_args={
                    "server_settings": {
                        "search_path": schema,
                        "application_name": f"quaero-{schema}",
                        **(server_settings or {}),
                    }
                },
            )
            self._reader = self._writer
            self.notifier: Notifier = _PgNotifier(self._asyncpg_dsn(parsed))
        else:
            path = parsed.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._writer = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=120)
            event.listen(self._writer.sync_engine, "connect", _sqlite_connect_hook(readonly=False))
            event.listen(self._writer.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            self._reader = create_async_engine(url, pool_size=4, max_overflow=4, pool_timeout=120)
            event.listen(self._reader.sync_engine, "connect", _sqlite_connect_hook(readonly=True))
            event.listen(self._reader.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
            self.notifier = Notifier()
        self._write_sessions = async_sessionmaker(self._writer, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)

    @staticmethod
    def _asyncpg_dsn(parsed: Any) -> str:
        return parsed.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    async def start(self) -> None:
        await self.notifier.start()

    async def close(self) -> None:
        await self.notifier.close()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with self._write_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction on a plain connection, for SQLAlchemy Core statements on hot paths
        (a fraction of a session's cost: no unit of work, no identity map)."""
        async with self._writer.connect() as conn:
            conn.info[_NOTIFY_KEY] = set()
            try:
                async with conn.begin():
                    yield conn
            finally:
                # Connection.info outlives the transaction (it belongs to the pooled connection).
                channels: set[str] = conn.info.pop(_NOTIFY_KEY, set())
        if not self.is_postgres:  # reached only after a commit
            for channel in channels:
                self.notifier._fire(channel)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Any]:
        """A pooled asyncpg connection outside any transaction (PostgreSQL only): each statement
        run on it commits by itself. For hot paths that are a single statement, a function call
        say, where a transaction's begin and commit would be two more round trips."""
        if not self.is_postgres:
            raise RuntimeError("autocommit() is for PostgreSQL")
        async with self._writer.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            try:
                yield driver
            except BaseException:
                # SQLAlchemy saw none of the statements: tell its pool when the connection died.
                if driver is None or driver.is_closed():
                    await conn.invalidate()
                raise

    async def warm(self, connections: int, statement: str = "SELECT 1", timeout: float = 10.0) -> None:
        """Open `connections` pooled connections now, each running `statement` once (PostgreSQL),
        so that a process's first units of work do not all wait for new connections and cold
        sessions at once. Best effort: a database not reachable yet is connected to later."""
        if not self.is_postgres or connections < 1:
            return
        # All are held open together, so each is a connection of its own.
        barrier = asyncio.Barrier(connections)

        async def one() -> None:
            try:
                async with self._writer.connect() as conn:
                    await conn.exec_driver_sql(statement)
                    await conn.rollback()
                    await barrier.wait()
            except asyncio.BrokenBarrierError:
                pass
            except BaseException:
                await barrier.abort()
                raise

        try:
            await asyncio.wait_for(asyncio.gather(*(one() for _ in range(connections))), timeout)
        except Exception as exc:
            log.warning("could not open %d database connection(s) ahead of work: %s", connections, exc)

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction on a plain connection (Core statements)."""
        async with self._reader.begin() as conn:
            yield conn

    async def notify(self, target: AsyncSession | AsyncConnection, channel: str) -> None:
        """Wake subscribers of `channel` once the transaction of `target` (a session from
        `session()` or a connection from `connection()`) commits; once per transaction."""
        if isinstance(target, AsyncConnection):
            channels: set[str] = target.info[_NOTIFY_KEY]
            if channel in channels:
                return
            channels.add(channel)
            if self.is_postgres:
                await target.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
            return
        notified: set[str] = target.info.setdefault(_NOTIFY_KEY, set())
        if channel in notified:
            return
        notified.add(channel)
        if self.is_postgres:
            await target.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
        else:
            fire = self.notifier._fire

            def after_commit(_session: Any) -> None:
                fire(channel)

            event.listen(target.sync_session, "after_commit", after_commit, once=True)


_DRIVER_KEY = "quaero_driver_connection"
# A `:name` parameter; not the second colon of a `::type` cast.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class PgStatement:
    """A PostgreSQL statement with `:name` parameters, run on the asyncpg connection under a
    session, inside the session's transaction. For the statements of hot paths only: running a
    statement through SQLAlchemy costs two to three times the statement itself (measured: ~170
    against ~65 us of client CPU for a trivial one). Rows come back as asyncpg Records (read by
    key); JSON columns come back as text, so hot statements return plain columns."""

    __slots__ = ("names", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def positional(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        self.sql = _PARAM.sub(positional, sql)
        self.names = tuple(names)

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> list[Any]:
        return await self.fetch_on(await driver_connection(session), params)

    async def fetch_on(self, connection: Any, params: Mapping[str, Any]) -> list[Any]:
        """Run on an asyncpg connection (one from `Database.autocommit()`, say)."""
        return await connection.fetch(self.sql, *[params[name] for name in self.names])  # type: ignore[no-any-return]


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection of a PostgreSQL session, its transaction begun (SQLAlchemy's
    adapter begins lazily, at the first statement it runs itself: a statement sent straight to
    the driver before that would run outside the transaction). Remembered for the session's
    current transaction only."""
    transaction = session.get_transaction()
    cached = session.info.get(_DRIVER_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the session's connection is closed")
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    session.info[_DRIVER_KEY] = (session.get_transaction(), driver)
    return driver


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL (timestamptz) and SQLite (text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if dialect.name == "postgresql" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON documents: jsonb on PostgreSQL, JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")

# The column types every service's declarative base maps its annotations to.
TYPE_ANNOTATIONS: dict[Any, Any] = {datetime: UtcDateTime, dict[str, Any]: JsonType, list[Any]: JsonType}


def utcnow() -> datetime:
    return datetime.now(UTC)


DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    """Checked list parameters: limit, offset and a whitelisted order."""

    limit: int
    offset: int
    order_by: str
    descending: bool


def page(
    limit: int, offset: int, order_by: str, order_dir: str, *, allowed: Sequence[str], default: str = "created_at"
) -> Page:
    """Validate list parameters (limit 0 means the default); errors name the parameter."""
    from libs.errors import FieldViolation, InvalidArgument

    violations = []
    if limit < 0 or limit > MAX_LIMIT:
        violations.append(FieldViolation("limit", f"must be between 1 and {MAX_LIMIT}"))
    if offset < 0:
        violations.append(FieldViolation("offset", "must be 0 or more"))
    if order_by and order_by not in allowed:
        violations.append(FieldViolation("order_by", f"must be one of {', '.join(allowed)}"))
    if order_dir and order_dir.lower() not in ("asc", "desc"):
        violations.append(FieldViolation("order_dir", "must be asc or desc"))
    if violations:
        raise InvalidArgument(violations=violations)
    return Page(
        limit=limit or DEFAULT_LIMIT,
        offset=offset,
        order_by=order_by or default,
        descending=(order_dir or "desc").lower() == "desc",
    )
