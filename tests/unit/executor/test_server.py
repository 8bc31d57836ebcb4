"""The executor process's supervision of its background loops."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.executor.server import supervise


async def test_a_loop_that_raises_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        stop.set()

    await supervise("scheduler", loop, stop, backoff=0)

    assert runs == 2
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "background task failed; restarting" and record.task == "scheduler"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


async def test_a_loop_that_returns_before_stop_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            stop.set()

    await supervise("leases", loop, stop, backoff=0)

    assert runs == 3
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert messages == ["background task ended unexpectedly; restarting"] * 2


async def test_a_loop_that_ends_on_stop_is_not_restarted(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        stop.set()

    await supervise("catalogue-changes", loop, stop, backoff=0)

    assert runs == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
