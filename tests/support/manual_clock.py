"""A clock tests move by hand, for the scheduler."""

from __future__ import annotations

import asyncio
from datetime import datetime


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        while self._now < when and not wake.is_set():
            waiters = {asyncio.create_task(self._moved.wait()), asyncio.create_task(wake.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def advance_to(self, when: datetime) -> None:
        self._now = when
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        await asyncio.sleep(0.05)  # let the scheduler claim and start its firings
