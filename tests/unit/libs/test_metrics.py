"""Helpers the services call to record metrics."""

from __future__ import annotations

import pytest

from libs import metrics


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (204, "2xx"), (301, "3xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"), (None, "error"), (0, "error")],
)
def test_status_class(status: int | None, expected: str) -> None:
    assert metrics.status_class(status) == expected


def test_observe_fetch_counts_by_class_and_times_it() -> None:
    before = metrics.PAGES_FETCHED.labels("4xx")._value.get()
    count_before = metrics.FETCH_LATENCY._sum.get()

    metrics.observe_fetch(404, 0.25)

    assert metrics.PAGES_FETCHED.labels("4xx")._value.get() == before + 1
    assert metrics.FETCH_LATENCY._sum.get() == pytest.approx(count_before + 0.25)
