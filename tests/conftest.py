"""Fixtures shared by every test: real PostgreSQL and RabbitMQ from the environment."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.amqp import QueueSpec, RabbitQueue
from tests.support.databases import PostgresDatabases, require_env
from tests.support.services import common_settings


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
