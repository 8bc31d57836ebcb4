"""Watching a process while hostile input goes through it: health answers in time, memory stays bounded.

Both watchers run in a thread of their own, so an event loop that a page or a config blocks is
measured from outside it (a watcher in the same loop would only notice once the loop is free).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import psutil


# What "keeps answering" means: every /healthz of the watch answered within a second of an idle
# machine's time. A shared machine with more runnable processes than cores gives each a share of a
# core, so the bound stretches with the load (at load 20 on 2 cores, an answer took 1-3 s with no
# page or pattern blocking anything); what it must catch, a frozen process, takes tens of seconds.
def health_limit() -> float:
    """The bound on every answer, read when a watch ends (the load over its last minute)."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


@dataclass
class HealthWatch:
    """GET `url` every `interval` seconds from a thread; `slowest` is the longest answer (or the
    time waited on one that did not come, or the longest this thread overslept a pause: code
    holding the GIL, such as a regular expression backtracking, freezes the whole process, this
    thread and /healthz alike), `failures` the answers that were not 200."""

    url: str
    interval: float = 0.1
    timeout: float = 5.0
    slowest: float = 0.0
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get(self.url)
                    if response.status_code != 200:
                        self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers += 1
                paused = time.monotonic()
                self._stop.wait(self.interval)
                self.slowest = max(self.slowest, time.monotonic() - paused - self.interval)

    def stop(self) -> None:
        self._stop.set()

    def check(self, limit: float | None = None) -> None:
        limit = health_limit() if limit is None else limit
        assert self.answers > 0, "the health watch never got an answer"
        assert not self.failures, f"/healthz failed: {self.failures[:5]}"
        assert self.slowest < limit, f"/healthz took {self.slowest:.2f} s (limit {limit:.2f} s)"


@contextmanager
def health_stays_up(base_url: str, limit: float | None = None) -> Iterator[HealthWatch]:
    """Poll `base_url`/healthz throughout the block; on a clean exit, fail the test if any answer
    took `limit` seconds (`health_limit()`) or more, or was not a 200."""
    watch = HealthWatch(base_url.rstrip("/") + "/healthz")
    thread = threading.Thread(target=watch.run, name="health-watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stop()
        thread.join(timeout=watch.timeout + 1)
    watch.check(limit)


@contextlib.asynccontextmanager
async def health_answers(base_url: str, limit: float | None = None) -> AsyncIterator[HealthWatch]:
    """`health_stays_up` for a gateway serving from the test's own event loop: the watch ends from
    a worker thread, so the loop stays free to answer its last request (joining the watching
    thread from the loop would block it while that request waits), and only once it has had an
    answer (a quick block would otherwise end before the first)."""
    watching = health_stays_up(base_url, limit)
    watch = watching.__enter__()
    try:
        yield watch
        for _ in range(250):
            if watch.answers:
                break
            await asyncio.sleep(0.02)
    except BaseException as exc:
        await asyncio.to_thread(watching.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await asyncio.to_thread(watching.__exit__, None, None, None)


@dataclass
class MemoryWatch:
    """The resident memory of this process, sampled every `interval` seconds from a thread:
    `baseline` when the watch starts, `peak` the most seen since."""

    interval: float = 0.02
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(self.interval)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)


@contextmanager
def memory_stays_under(limit_bytes: int) -> Iterator[MemoryWatch]:
    """Sample this process's RSS throughout the block; on a clean exit, fail the test if it grew
    by `limit_bytes` or more over what it was when the block began."""
    watch = MemoryWatch()
    watch.baseline = watch.peak = psutil.Process().memory_info().rss
    thread = threading.Thread(target=watch.run, name="memory-watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch._stop.set()
        thread.join(timeout=2)
    assert watch.growth < limit_bytes, (
        f"memory grew by {watch.growth / 2**20:.0f} MiB (limit {limit_bytes / 2**20:.0f} MiB)"
    )
