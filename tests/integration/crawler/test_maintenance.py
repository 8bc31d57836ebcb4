"""The maintenance actions against real databases."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from libs.db import Database
from services.crawler.actions.maintenance import reindex
from tests.support.crawler import crawler_database
from tests.support.services import common_settings

_SEARCH_INDEX = text(
    "SELECT c.oid, i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
    " WHERE c.relname LIKE 'ix_documents_search%' AND c.relnamespace = 'crawler'::regnamespace"
)


async def search_indexes(db: Database) -> list[tuple[int, bool]]:
    async with db.read() as session:
        return [(r.oid, r.indisvalid) for r in await session.execute(_SEARCH_INDEX)]


async def test_reindex_on_postgresql_rebuilds_the_search_index_concurrently(pg_url: str, tmp_path: Path) -> None:
    async with crawler_database(common_settings(pg_url, tmp_path)) as db:
        ((before, _),) = await search_indexes(db)

        result = await reindex(db, {})
        after = await search_indexes(db)

    assert result == {"documents": 0, "dry_run": False}
    # CONCURRENTLY builds a new index beside the old one and swaps it in (a plain REINDEX
    # rewrites the same index in place, under a lock that stops every writer).
    assert len(after) == 1
    ((rebuilt, valid),) = after
    assert rebuilt != before and valid
