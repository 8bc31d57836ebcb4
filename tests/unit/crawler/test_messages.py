"""Crawl job rows as messages: a row an older release stored with numbers out of range still lists."""

from __future__ import annotations

import pytest

from services.crawler.messages import config_message


def test_numbers_out_of_range_read_as_the_nearest_end_of_their_range() -> None:
    config = {"max_depth": 10**12, "max_pages": 1e20, "concurrency": 0, "rate_limit": -5, "obey_robots": True}
    msg = config_message(config)
    assert (msg.max_depth, msg.max_pages, msg.concurrency, msg.rate_limit) == (100, 10_000_000, 1, 0)
    assert msg.obey_robots is True


@pytest.mark.parametrize("value", [float("nan"), "2", None])
def test_what_is_no_number_reads_as_unset(value: object) -> None:
    assert not config_message({"max_depth": value}).HasField("max_depth")


def test_numbers_in_range_are_kept() -> None:
    msg = config_message({"max_depth": 3, "max_pages": 250, "concurrency": 16, "rate_limit": 200})
    assert (msg.max_depth, msg.max_pages, msg.concurrency, msg.rate_limit) == (3, 250, 16, 200)
