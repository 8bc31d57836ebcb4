"""Publisher heartbeats: every process that leases URL tasks says, about once a second, that it lives.

A lease records its publisher (`crawl_urls.leased_by`). A process killed between the commit that
leased tasks and the broker's confirm of their publish leaves them leased and never sent; the
broker has nothing to redeliver. Its heartbeat stops with it, and the pump republishes the leases
of a publisher silent for `publisher_timeout` seconds, instead of waiting out the visibility
timeout. A publisher only slow, not dead, costs duplicates, which settles drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from libs.db import Database, utcnow
from services.crawler.store import forget_publisher, heartbeat, retrying

log = logging.getLogger(__name__)

# Heartbeats per publisher timeout: one late or failed beat never makes a publisher look dead.
BEATS_PER_TIMEOUT = 5


class Heartbeat:
    """The row of one publishing process in crawl_publishers, renewed until it stops."""

    def __init__(self, db: Database, timeout: float, role: str) -> None:
        self.db = db
        self.id = f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.interval = timeout / BEATS_PER_TIMEOUT
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Registered before anything is leased under this id."""
        await retrying("registering a publisher", lambda: heartbeat(self.db, self.id, utcnow()))
        self._task = asyncio.create_task(self._beat(), name="publisher-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await heartbeat(self.db, self.id, utcnow())
            except Exception as exc:
                log.warning("publisher heartbeat failed (%s); trying again", str(exc).splitlines()[0][:200])

    async def stop(self, *, all_published: bool) -> None:
        """Stop beating. `all_published`: every task leased under this id reached the broker (or
        was given back), so the row goes at once; otherwise the pump republishes them once the
        timeout has passed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if all_published:
            try:
                await forget_publisher(self.db, self.id)
            except Exception as exc:
                log.warning("removing the publisher row failed (%s); the pump removes it", exc)
