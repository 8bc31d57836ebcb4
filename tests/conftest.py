"""Fixtures shared by every test: real PostgreSQL and RabbitMQ from the environment."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.amqp import QueueSpec, RabbitQueue
from tests.support.databases import PostgresDatabases, require_env
from tests.support.services import common_settings

ROOT = Path(__file__).resolve().parents[1]


def _keep_bytecode() -> None:
    """Where writing bytecode is turned off (PYTHONDONTWRITEBYTECODE), write it under
    .pytest_cache/bytecode instead (PYTHONPYCACHEPREFIX: the source tree stays clean). The suite
    starts hundreds of Python processes (services, crawl workers, their spawned parse pools, the
    CLI): without a cache each compiles every module it imports again, 2-3 s of CPU apiece here.
    Processes started from now on inherit the environment; this process writes too."""
    if not (sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE")):
        return
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    prefix = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / ".pytest_cache" / "bytecode"))
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


_keep_bytecode()


@pytest.fixture(scope="session")
def postgres() -> PostgresDatabases:
    return PostgresDatabases(require_env("QUAERO_TEST_DATABASE_URL"))


@pytest.fixture
def pg_url(postgres: PostgresDatabases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test only."""
    url = postgres.create()
    try:
        yield url
    finally:
        postgres.drop(url)


@pytest.fixture
def amqp_url() -> str:
    return require_env("QUAERO_TEST_AMQP_URL")


@pytest.fixture
async def rabbit_spec(amqp_url: str) -> AsyncIterator[QueueSpec]:
    """A throwaway queue name, deleted (with its dead-letter queue) afterwards."""
    spec = QueueSpec(name=f"quaero.test.{uuid.uuid4().hex[:12]}", delivery_limit=3)
    yield spec
    queue = await RabbitQueue.connect(amqp_url, spec)
    try:
        await queue.delete()
    finally:
        await queue.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Service settings for embedded SQLite, then for PostgreSQL: tests using it run on both."""
    if request.param == "sqlite":
        yield common_settings(None, tmp_path / "data")
    else:
        postgres: PostgresDatabases = request.getfixturevalue("postgres")
        url = postgres.create()
        try:
            yield common_settings(url, tmp_path / "data")
        finally:
            postgres.drop(url)
