"""The webhook outbox: deliveries written in the transaction of the event they announce, claimed
by any replica (FOR UPDATE SKIP LOCKED on PostgreSQL) and settled after each attempt."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ForeignKey, Integer, String, Table, Text, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from libs.db import Database, utcnow
from services.executor.model import COMPLETED, FAILED, WebhookDelivery, changed_anything, sum_changes
from services.executor.store import Base

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "failed"
# Deliveries are retried for this long after the event, then given up.
RETRY_WINDOW = timedelta(hours=24)
# Woken (after commit) whenever deliveries are written, so a sender sends at once.
OUTBOX_CHANNEL = "webhook_outbox"
# The ledger's terminal event types and the webhook event each announces.
_ANNOUNCED = {COMPLETED: "execution.completed", FAILED: "execution.failed"}
DOCUMENTS_CHANGED = "documents.changed"


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    execution_id: Mapped[str] = mapped_column(String(36), ForeignKey("executions.id", ondelete="CASCADE"))
    job_definition_id: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


DELIVERIES = cast(Table, WebhookDeliveryRow.__table__)


def _delivery(row: Any) -> WebhookDelivery:
    r = row._mapping
    return WebhookDelivery(**{c.name: r[c.name] for c in DELIVERIES.columns})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def announcements(execution: Any, terminal: str) -> list[tuple[str, dict[str, Any]]]:
    """The webhook events a terminal ledger event announces, with their data: the execution's
    outcome, and `documents.changed` when its crawls found a new, changed or removed document."""
    steps = execution["steps"]
    changes = sum_changes(job for step in steps for job in (step.get("changes") or {}).values())
    data: dict[str, Any] = {
        "execution_id": execution["id"],
        "job_definition_id": execution["job_definition_id"],
        "job_name": execution["job_name"],
        "status": execution["status"],
        "trigger": execution["trigger"],
        "parent_execution_id": execution["parent_execution_id"],
        "changes": changes,
        "started_at": _iso(execution["started_at"]),
        "completed_at": _iso(execution["completed_at"]),
    }
    if execution["error_code"]:
        data["error"] = {"code": execution["error_code"], "message": execution["error_message"]}
    out = [(_ANNOUNCED[terminal], data)]
    if changed_anything(changes):
        crawl_job_ids = [job_id for step in steps for job_id in step.get("crawl_job_ids", [])]
        out.append((DOCUMENTS_CHANGED, {**data, "crawl_job_ids": crawl_job_ids}))
    return out


async def enqueue(db: Database, conn: AsyncConnection, execution_id: str, event_types: Sequence[str]) -> int:
    """Write the deliveries the ledger events `event_types` announce, on `conn` (the transaction
    that appends those events). Returns how many were written."""
    terminal = next((t for t in event_types if t in _ANNOUNCED), None)
    if terminal is None:
        return 0
    from services.executor.ledger import EXECUTIONS

    row = (await conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id))).first()
    if row is None:
        return 0
    execution = row._mapping
    webhooks = execution["definition"].get("webhooks") or []
    if not webhooks:
        return 0
    now = utcnow()
    rows = []
    for event, data in announcements(execution, terminal):
        for hook in webhooks:
            if hook.get("events") and event not in hook["events"]:
                continue
            delivery_id = f"msg_{uuid.uuid4().hex}"
            body = {"type": event, "timestamp": _iso(now), "data": data}
            rows.append({
                "id": delivery_id, "execution_id": execution_id, "job_definition_id": execution["job_definition_id"],
                "url": hook["url"], "event": event, "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
                "secret": hook.get("secret", ""), "status": PENDING, "attempts": 0, "last_status_code": None,
                "last_error": "", "next_attempt_at": now, "created_at": now, "delivered_at": None,
            })  # fmt: skip
    if rows:
        await conn.execute(insert(DELIVERIES), rows)
        await db.notify(conn, OUTBOX_CHANNEL)
    return len(rows)


class Outbox:
    """Every statement on the outbox but the writes of `enqueue`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, limit: int, claim_seconds: float) -> list[WebhookDelivery]:
        """Take up to `limit` due deliveries for one attempt each: their attempt count goes up and
        they are not due again for `claim_seconds` (should this replica die mid-attempt, another
        takes them then). Replicas never claim the same row at once (SKIP LOCKED)."""
        now = utcnow()
        due = (
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.status == PENDING, DELIVERIES.c.next_attempt_at <= now)
            .order_by(DELIVERIES.c.next_attempt_at)
            .limit(limit)
        )
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        async with self.db.connection() as conn:
            rows = await conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(due.scalar_subquery()))
                .values(attempts=DELIVERIES.c.attempts + 1, next_attempt_at=now + timedelta(seconds=claim_seconds))
                .returning(*DELIVERIES.c)
            )
            return [_delivery(r) for r in rows]

    async def delivered(self, delivery: WebhookDelivery, status_code: int) -> bool:
        return await self._settle(
            delivery,
            status=DELIVERED,
            last_status_code=status_code,
            last_error="",
            delivered_at=utcnow(),
        )

    async def failed(self, delivery: WebhookDelivery, status_code: int | None, error: str, delay: float) -> bool:
        """Record a failed attempt: due again after `delay`, or given up once that would be more
        than 24 hours after the event."""
        retry_at = utcnow() + timedelta(seconds=delay)
        gave_up = retry_at > delivery.created_at + RETRY_WINDOW
        return await self._settle(
            delivery,
            status=GAVE_UP if gave_up else PENDING,
            last_status_code=status_code,
            last_error=error[:500],
            next_attempt_at=retry_at,
        )

    async def _settle(self, delivery: WebhookDelivery, **values: Any) -> bool:
        # Only the attempt that claimed it last settles it (a slow attempt whose claim lapsed and
        # was taken again by another replica leaves the row to that one).
        async with self.db.connection() as conn:
            result = await conn.execute(
                update(DELIVERIES)
                .where(
                    and_(
                        DELIVERIES.c.id == delivery.id,
                        DELIVERIES.c.status == PENDING,
                        DELIVERIES.c.attempts == delivery.attempts,
                    )
                )
                .values(**values)
            )
            return bool(result.rowcount)

    async def next_due(self) -> datetime | None:
        async with self.db.read_connection() as conn:
            due = (
                select(DELIVERIES.c.next_attempt_at)
                .where(DELIVERIES.c.status == PENDING)
                .order_by(DELIVERIES.c.next_attempt_at)
                .limit(1)
            )
            return cast(datetime | None, (await conn.execute(due)).scalar())

    async def list(self, execution_id: str, limit: int, offset: int) -> tuple[list[WebhookDelivery], int]:
        where = DELIVERIES.c.execution_id == execution_id
        async with self.db.read_connection() as conn:
            total = (await conn.execute(select(func.count()).select_from(DELIVERIES).where(where))).scalar()
            rows = await conn.execute(
                select(DELIVERIES)
                .where(where)
                .order_by(DELIVERIES.c.created_at, DELIVERIES.c.event, DELIVERIES.c.url, DELIVERIES.c.id)
                .limit(limit)
                .offset(offset)
            )
            return [_delivery(r) for r in rows], int(total or 0)
