"""Durable cancels: an execution cancelled or timed out has its crawl jobs cancelled, whatever
becomes of the executor that took the cancel and however long the crawler is away.

The ledger writes a `crawl_cancels` row in the transaction that ends the execution (cancelled,
or failed on its timeout). Every executor replica runs `CrawlCancels.run`: it claims due rows
(on PostgreSQL with SKIP LOCKED, so replicas share them), asks the crawler to cancel the
execution's crawl jobs, and deletes the row once the crawler answers; a failed attempt is retried
with exponential backoff, for as long as it takes. CancelCrawlJobs is idempotent, so an attempt
repeated after a crash (or by two replicas whose claims overlapped) does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import grpc
from sqlalchemy import Integer, String, Table, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from libs.db import Database, utcnow
from quaero.v1 import crawler_service_pb2
from services.executor.store import Base

log = logging.getLogger(__name__)


class CrawlCancelRow(Base):
    __tablename__ = "crawl_cancels"

    execution_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


CANCELS = cast(Table, CrawlCancelRow.__table__)


async def record_cancel(conn: AsyncConnection, execution_id: str, reason: str, *, first_in: float = 0.0) -> None:
    """In the caller's transaction: the crawler is to cancel `execution_id`'s crawl jobs. The
    first attempt is due `first_in` seconds from now (the replica that took the cancel asks at
    once itself; this row is for when it cannot)."""
    if (await conn.execute(select(CANCELS.c.execution_id).where(CANCELS.c.execution_id == execution_id))).first():
        return
    now = utcnow()
    await conn.execute(
        CANCELS.insert().values(
            execution_id=execution_id,
            reason=reason,
            attempts=0,
            next_attempt_at=now + timedelta(seconds=first_in),
            last_error="",
            created_at=now,
        )
    )


@dataclass(frozen=True)
class CancelPolicy:
    # How often to look for due rows when nothing wakes the loop.
    poll: float = 1.0
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    # How long one attempt holds its row (longer than the RPC's deadline).
    claim_seconds: float = 30.0
    rpc_timeout: float = 10.0
    batch: int = 20

    def delay(self, attempts: int) -> float:
        return float(min(self.initial_backoff * 2 ** min(attempts - 1, 30), self.max_backoff))


class CrawlCancels:
    def __init__(self, db: Database, crawler: Any, policy: CancelPolicy | None = None) -> None:
        self.db = db
        self.crawler = crawler
        self.policy = policy or CancelPolicy()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def confirmed(self, execution_id: str) -> None:
        """The crawler confirmed this execution's cancel (asked by the replica that took it)."""
        async with self.db.connection() as conn:
            await conn.execute(delete(CANCELS).where(CANCELS.c.execution_id == execution_id))

    async def run(self, stop: asyncio.Event) -> None:
        # `stop` wakes the loop too: a stopping executor does not wait out a poll period.
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        try:
            await self._loop(stop)
        finally:
            stopping.cancel()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                claimed = await self._claim()
            except Exception:
                log.warning("could not read the crawl cancels to send; retrying", exc_info=True)
                claimed = []
            for row in claimed:
                await self._send(row)
            if len(claimed) == self.policy.batch:
                continue  # more may be due
            self._wake.clear()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.poll):
                    await self._wake.wait()

    async def _claim(self) -> list[Any]:
        now = utcnow()
        async with self.db.connection() as conn:
            query = (
                select(CANCELS.c.execution_id, CANCELS.c.reason, CANCELS.c.attempts)
                .where(CANCELS.c.next_attempt_at <= now)
                .order_by(CANCELS.c.next_attempt_at)
                .limit(self.policy.batch)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    update(CANCELS)
                    .where(CANCELS.c.execution_id.in_([r.execution_id for r in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=self.policy.claim_seconds))
                )
            return list(rows)

    async def _send(self, row: Any) -> None:
        fields = {"execution_id": row.execution_id, "reason": row.reason, "attempts": row.attempts + 1}
        request = crawler_service_pb2.CancelCrawlJobsRequest(execution_id=row.execution_id, reason=row.reason)
        try:
            response = await self.crawler.CancelCrawlJobs(request, timeout=self.policy.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            await self._later(row, f"{exc.code().name}: {exc.details()}", fields)
            return
        except Exception as exc:  # a fault of ours: logged and retried like the crawler being away
            log.exception("cancelling crawl jobs failed", extra=fields)
            await self._later(row, type(exc).__name__, fields)
            return
        with contextlib.suppress(Exception):
            await self.confirmed(row.execution_id)
        log.info("crawl jobs cancelled", extra={**fields, "crawl_job_ids": list(response.cancelled_job_ids)})

    async def _later(self, row: Any, error: str, fields: dict[str, Any]) -> None:
        delay = self.policy.delay(row.attempts + 1)
        log.warning("could not cancel crawl jobs yet; retrying", extra={**fields, "error": error, "delay": delay})
        with contextlib.suppress(Exception):
            async with self.db.connection() as conn:
                await conn.execute(
                    update(CANCELS)
                    .where(CANCELS.c.execution_id == row.execution_id)
                    .values(
                        attempts=row.attempts + 1,
                        last_error=error[:1000],
                        next_attempt_at=utcnow() + timedelta(seconds=delay),
                    )
                )
