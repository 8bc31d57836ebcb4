from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from libs.db import Database
from services.executor.settings import ExecutorSettings
from tests.support.services import Stack, common_settings, migrate_for, running_stack
from tests.support.site import LocalSite, small_site


@pytest.fixture
async def stack(pg_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Crawler (with in-process workers), executor and gateway on a fresh PostgreSQL database."""
    async with running_stack(common_settings(pg_url, tmp_path), execution_lease_seconds=3.0) as s:
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with small_site(4).serve() as s:
        yield s


@pytest.fixture
async def second_site() -> AsyncIterator[LocalSite]:
    async with small_site(3, prefix="/other").serve() as s:
        yield s


@pytest.fixture
async def executor_db(backend: dict[str, Any]) -> AsyncIterator[Database]:
    """The executor's migrated database on each backend (SQLite, PostgreSQL)."""
    await migrate_for(backend)
    db = Database(ExecutorSettings(**backend).database_url_for("executor"), "executor")
    await db.start()
    try:
        yield db
    finally:
        await db.close()
