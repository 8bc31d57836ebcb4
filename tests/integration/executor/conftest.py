from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.services import Stack, common_settings, running_stack
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
