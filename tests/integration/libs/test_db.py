"""The database helper on SQLite and PostgreSQL: writers never see "database is locked", and
notifications wake subscribers after commit."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from libs.db import Database, PgStatement
from tests.support.runs import wait_until


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url, "scratch")
    await database.start()
    if database.is_postgres:
        async with database.session() as s:
            await s.execute(text("CREATE SCHEMA IF NOT EXISTS scratch"))
    async with database.session() as s:
        await s.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await s.execute(text("INSERT INTO counter VALUES (1, 0)"))
    try:
        yield database
    finally:
        await database.close()


async def test_concurrent_writers_all_commit(db: Database) -> None:
    async def bump() -> None:
        async with db.session() as s:
            n = (await s.execute(text("SELECT n FROM counter WHERE id = 1"))).scalar_one()
            await asyncio.sleep(0)  # let others interleave: the write lock must keep this safe
            await s.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

    if db.is_postgres:
        # PostgreSQL's READ COMMITTED needs the statement form; that is how the stores write counters.
        async def bump() -> None:
            async with db.session() as s:
                await s.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))

    await asyncio.gather(*(bump() for _ in range(50)))
    async with db.read() as s:
        assert (await s.execute(text("SELECT n FROM counter"))).scalar_one() == 50


async def test_sqlite_readers_cannot_write(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", "scratch")
    try:
        async with database.session() as s:
            await s.execute(text("CREATE TABLE t (n INTEGER)"))
        with pytest.raises(Exception, match="readonly"):
            async with database.read() as s:
                await s.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await database.close()


async def test_notify_wakes_subscribers_after_commit(db: Database) -> None:
    async with db.notifier.subscribe("job_1") as woken:  # LISTENing once entered
        async with db.session() as s:
            await db.notify(s, "job_1")
            assert not woken.is_set()  # not before commit
        await asyncio.wait_for(woken.wait(), 5)


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, "scratch")
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def listening(db: Database) -> set[str]:
    """The channels the notifier's connection LISTENs to, as PostgreSQL sees them."""
    notifier: Any = db.notifier
    await wait_until(lambda: _connected(notifier))
    async with notifier._lock:
        rows = await notifier._conn.fetch("SELECT pg_listening_channels() AS channel")
    return {r["channel"] for r in rows}


async def _connected(notifier: Any) -> bool:
    return notifier._conn is not None


async def notify(db: Database, channel: str) -> None:
    async with db.session() as s:
        await db.notify(s, channel)


async def test_postgres_unlistens_when_the_last_subscriber_leaves(pg_db: Database) -> None:
    assert await listening(pg_db) == set()
    async with pg_db.notifier.subscribe("job_1") as first:
        async with pg_db.notifier.subscribe("job_1"):
            assert await listening(pg_db) == {"job_1"}
        assert await listening(pg_db) == {"job_1"}  # one subscriber is still there
        await notify(pg_db, "job_1")
        await asyncio.wait_for(first.wait(), 10)
    assert await listening(pg_db) == set()
    # Subscribing again LISTENs again, and is woken again.
    async with pg_db.notifier.subscribe("job_1") as again:
        assert await listening(pg_db) == {"job_1"}
        await notify(pg_db, "job_1")
        await asyncio.wait_for(again.wait(), 10)
    assert await listening(pg_db) == set()


async def test_no_listener_outlives_its_subscribers(db: Database) -> None:
    """Many short-lived watchers (one channel per execution) leave nothing behind."""
    for i in range(30):
        async with db.notifier.subscribe(f"exec_{i}"), db.notifier.subscribe(f"exec_{i}"):
            pass
    cancelled = asyncio.create_task(_subscribe_forever(db, "exec_cancelled"))
    await wait_until(lambda: _subscribed(db, "exec_cancelled"))
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert not db.notifier._events
    if db.is_postgres:
        assert await listening(db) == set()


async def _subscribe_forever(db: Database, channel: str) -> None:
    async with db.notifier.subscribe(channel):
        await asyncio.Event().wait()


async def _subscribed(db: Database, channel: str) -> bool:
    return channel in db.notifier._events


BUMP = PgStatement("UPDATE counter SET n = n + :by WHERE id = :id RETURNING n")


async def test_statements_sent_to_the_driver_run_in_the_sessions_transaction(pg_db: Database) -> None:
    async with pg_db.session() as s:
        await s.execute(text("CREATE SCHEMA IF NOT EXISTS scratch"))
        await s.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await s.execute(text("INSERT INTO counter VALUES (1, 0)"))

    # The first statement of the transaction goes to the driver: the transaction begins anyway,
    # so a failure later in it undoes that statement too.
    with pytest.raises(RuntimeError, match="undo"):
        async with pg_db.session() as s:
            assert [r["n"] for r in await BUMP.fetch(s, {"by": 5, "id": 1})] == [5]
            await s.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
            assert [r["n"] for r in await BUMP.fetch(s, {"by": 10, "id": 1})] == [16]
            raise RuntimeError("undo")
    async with pg_db.session() as s:
        assert (await s.execute(text("SELECT n FROM counter"))).scalar_one() == 0
        assert [r["n"] for r in await BUMP.fetch(s, {"by": 2, "id": 1})] == [2]
    async with pg_db.session() as s:
        assert (await s.execute(text("SELECT n FROM counter"))).scalar_one() == 2


async def test_warm_opens_that_many_connections_ahead_of_work(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"quaero-warm-{uuid.uuid4().hex[:8]}"
    database = Database(pg_url, "scratch", pool_size=3, server_settings={"application_name": name})
    try:
        await database.warm(3, "SELECT count(*) FROM pg_class")
        async with database.read() as s:
            sessions = (
                await s.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": name})
            ).scalar_one()
        assert sessions == 3  # all still pooled, one of them answering this query
    finally:
        await database.close()

    # A statement that fails, like a database not reachable yet, is only a warning: the pool
    # connects when work comes.
    broken = Database(pg_url, "scratch", pool_size=2)
    try:
        with caplog.at_level("WARNING", logger="libs.db"):
            await broken.warm(2, "SELECT * FROM no_such_table")
        assert "ahead of work" in caplog.text
        async with broken.read() as s:
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await broken.close()
