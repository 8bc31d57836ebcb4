"""Crawler fixtures: PostgreSQL + RabbitMQ settings with a throwaway queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.amqp import QueueSpec, RabbitQueue
from services.crawler.settings import CrawlerSettings
from tests.support.crawler import crawler_settings


@pytest.fixture
async def shared(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[CrawlerSettings]:
    """Settings for the production topology: PostgreSQL, RabbitMQ, a queue of this test's own."""
    settings = crawler_settings({"database_url": pg_url, "amqp_url": amqp_url, "data_dir": tmp_path})
    yield settings
    queue = await RabbitQueue.connect(amqp_url, QueueSpec(settings.queue_name, settings.delivery_limit))
    try:
        await queue.delete()
    finally:
        await queue.close()
