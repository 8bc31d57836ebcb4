"""Real PostgreSQL for tests: one database per test, cloned from a template migrated once.

The template's name carries a fingerprint of every migration, so sessions running different
code (or concurrently) never share a stale schema.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from libs.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = {
    "executor": ROOT / "services" / "executor" / "migrations",
    "crawler": ROOT / "services" / "crawler" / "migrations",
}
T = TypeVar("T")


def require_env(name: str) -> str:
    """The variable's value; a missing one fails the test loudly (never a silent skip)."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: integration tests need a real service (see README, `make test`)")
    return value


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even while a test's loop exists."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _fingerprint() -> str:
    digest = hashlib.sha1()
    for folder in MIGRATIONS.values():
        for path in sorted((folder / "versions").glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def asyncpg_dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy URL (for tests that query a database directly)."""
    return _dsn(url)


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _ensure_template(admin_url: str) -> str:
    name = f"quaero_tpl_{_fingerprint()}"
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('quaero-test-template'))")
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return name
            building = f"{name}_build"
            await conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{building}"')
            url = make_url(admin_url).set(database=building).render_as_string(hide_password=False)
            for schema, folder in MIGRATIONS.items():
                await migrate(url, schema, folder)
            await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            # Test databases left behind by killed runs (the name carries the creation time).
            cutoff = int(time.time()) - 6 * 3600
            for (old,) in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'quaero_t_%'"):
                parts = old.split("_")
                if len(parts) >= 4 and parts[2].isdigit() and int(parts[2]) < cutoff:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
            return name
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('quaero-test-template'))")
    finally:
        await conn.close()


async def _clone(admin_url: str, template: str) -> str:
    name = f"quaero_t_{int(time.time())}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        for attempt in range(20):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except asyncpg.ObjectInUseError:
                # Another session is cloning the same template at this instant.
                await asyncio.sleep(0.1 * (attempt + 1))
        else:
            raise RuntimeError(f"could not clone {template}")
    finally:
        await conn.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _drop(admin_url: str, url: str) -> None:
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, *schemas: str) -> AsyncIterator[str]:
    """A database of its own migrated for `schemas` from scratch (no template), dropped
    afterwards: what the benchmarks run on."""
    name = f"quaero_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        for schema in schemas:
            await migrate(url, schema, MIGRATIONS[schema])
        yield url
    finally:
        await _drop(admin_url, url)


class PostgresDatabases:
    """Hands out migrated databases; `close()` drops them."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = run_sync(_ensure_template(admin_url))

    def create(self) -> str:
        return run_sync(_clone(self.admin_url, self.template))

    def drop(self, url: str) -> None:
        run_sync(_drop(self.admin_url, url))


async def terminate_backends(url: str) -> int:
    """pg_terminate_backend for every connection to this test's own database, and no other;
    returns once they are gone."""
    database = make_url(url).database
    conn = await asyncpg.connect(_dsn(url, "postgres"))
    try:
        # Two statements: in one, the planner may call pg_terminate_backend before filtering.
        pids = [
            r[0]
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
            )
        ]
        terminated = [
            r[0]
            for r in await conn.fetch("SELECT pid FROM unnest($1::int[]) AS pid WHERE pg_terminate_backend(pid)", pids)
        ]
        gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = any($1::int[])"
        while not await conn.fetchval(gone, terminated):  # noqa: ASYNC110 - the server's state, not ours
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    return len(terminated)
