"""Crawler settings defaults that shape how a worker behaves."""

from __future__ import annotations

from services.crawler.settings import CrawlerSettings


def test_pages_over_32_kib_are_parsed_off_the_event_loop_by_default() -> None:
    assert CrawlerSettings.model_fields["parse_inline_limit"].default == 32 * 1024
