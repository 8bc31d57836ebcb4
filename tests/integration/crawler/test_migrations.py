"""The crawler's migrations upgrade a database that already holds crawls, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.migrate import migrate
from services.crawler.server import MIGRATIONS

SCHEMA = "crawler_upgrade"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'crawler.db'}"
    return str(request.getfixturevalue("pg_url"))


async def execute(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    is_pg = url.startswith("postgresql")
    connect_args = {"server_settings": {"search_path": SCHEMA}} if is_pg else {}
    engine = create_async_engine(url, connect_args=connect_args)
    try:
        async with engine.begin() as conn:
            results = [await conn.execute(text(s)) for s in statements]
            return [[tuple(r) for r in result] if result.returns_rows else [] for result in results]
    finally:
        await engine.dispose()


async def test_upgrading_from_the_first_release_keeps_jobs_and_urls_and_widens_request_id(database_url: str) -> None:
    await migrate(database_url, SCHEMA, MIGRATIONS, "0001")
    await execute(
        database_url,
        "INSERT INTO crawl_jobs (id, status, config, source_snapshot, seed_urls, metadata, source_id, max_depth,"
        " max_pages, concurrency, request_id, created_at, updated_at)"
        " VALUES ('j1', 'running', '{}', '{}', '[]', '{}', 's', 1, 1, 1, 'rid', '2026-01-01', '2026-01-01')",
        "INSERT INTO crawl_urls (job_id, url_key, url, host, depth, state, created_at, updated_at)"
        " VALUES ('j1', 'k1', 'http://docs.test/', 'docs.test', 0, 'queued', '2026-01-01', '2026-01-01')",
    )

    await migrate(database_url, SCHEMA, MIGRATIONS)
    (urls,), (jobs,) = [
        rows[0]
        for rows in await execute(
            database_url,
            "SELECT count(*) FROM crawl_urls WHERE job_id = 'j1'",
            "UPDATE crawl_jobs SET request_id = '" + "r" * 300 + "' WHERE id = 'j1' RETURNING length(request_id)",
        )
    ]

    assert urls == 1
    assert jobs == 300


async def test_documents_are_compressed_with_lz4_where_postgresql_has_it(pg_url: str) -> None:
    await migrate(pg_url, SCHEMA, MIGRATIONS)

    ((available,), *_), columns = await execute(
        pg_url,
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
        "SELECT attname, attcompression::text FROM pg_attribute"
        f" WHERE attrelid = '{SCHEMA}.documents'::regclass AND attname IN ('markdown', 'search') ORDER BY attname",
    )

    expected = "l" if available else ""
    assert columns == [("markdown", expected), ("search", expected)]
