"""The run ledger's tables and every SQL statement on them.

Every state change is a compare-and-set on `status` (and `owner` for the driving instance) and
appends its event in the same transaction, then wakes watchers after commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from libs.db import Database, Page, UtcDateTime, utcnow
from libs.errors import NotFound
from services.executor.model import (
    CANCELLED,
    PENDING,
    POST_DONE,
    POST_PENDING,
    RUNNING,
    TERMINAL,
    Execution,
    ExecutionEvent,
    PostJobOutcome,
    StepState,
    outcomes_json,
)
from services.executor.store import Base

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class ExecutionRow(Base):
    __tablename__ = "executions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_definition_id: Mapped[str] = mapped_column(String(128))
    job_name: Mapped[str] = mapped_column(Text)
    definition: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    parent_execution_id: Mapped[str | None] = mapped_column(String(36))
    lineage: Mapped[list[Any]]
    steps: Mapped[list[Any]]
    post_jobs_state: Mapped[str] = mapped_column(String(16), default="none")
    post_jobs: Mapped[dict[str, Any]]
    error_code: Mapped[str] = mapped_column(String(32), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class ExecutionEventRow(Base):
    __tablename__ = "execution_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String(36), ForeignKey("executions.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"

    job_definition_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    execution_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]


class ScheduleFiringRow(Base):
    __tablename__ = "schedule_firings"

    job_definition_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fire_at: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    execution_id: Mapped[str | None] = mapped_column(String(36))
    skipped: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class AutoStartRow(Base):
    __tablename__ = "auto_starts"

    job_definition_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]


def _outcomes(items: list[dict[str, Any]]) -> list[PostJobOutcome]:
    return [PostJobOutcome(**item) for item in items]


def _execution(row: ExecutionRow) -> Execution:
    return Execution(
        id=row.id,
        job_definition_id=row.job_definition_id,
        job_name=row.job_name,
        definition=dict(row.definition),
        status=row.status,
        trigger=row.trigger,
        lineage=list(row.lineage),
        steps=[StepState.from_json(s) for s in row.steps],
        parent_execution_id=row.parent_execution_id,
        post_jobs_state=row.post_jobs_state,
        triggered=_outcomes(row.post_jobs.get("triggered", [])),
        skipped=_outcomes(row.post_jobs.get("skipped", [])),
        error_code=row.error_code,
        error_message=row.error_message,
        idempotency_key=row.idempotency_key,
        owner=row.owner,
        lease_until=row.lease_until,
        deadline=row.deadline,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )


def channel(execution_id: str) -> str:
    """The notification channel of one execution's events."""
    return "exec_" + execution_id.replace("-", "")


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _event(
        self, session: AsyncSession, execution_id: str, type: str, payload: dict[str, Any] | None = None
    ) -> None:
        session.add(ExecutionEventRow(execution_id=execution_id, type=type, payload=payload or {}, created_at=utcnow()))
        await self.db.notify(session, channel(execution_id))

    # ----------------------------------------------------------------------------- create

    async def create(self, execution: Execution, *, lease_seconds: float) -> tuple[Execution, bool]:
        """Insert a new execution owned by `execution.owner` (with its `created` event).

        Returns (execution, replayed): with an idempotency key used for the same definition
        within 24 hours, or for a post-job the parent already started, the existing execution."""
        now = utcnow()
        async with self.db.session() as session:
            if execution.idempotency_key:
                existing = await self._claim_idempotency_key(session, execution, now)
                if existing is not None:
                    return existing, True
            if execution.parent_execution_id:
                existing_child = await self._child(session, execution)
                if existing_child is not None:
                    return existing_child, True
            row = ExecutionRow(
                id=execution.id,
                job_definition_id=execution.job_definition_id,
                job_name=execution.job_name,
                definition=execution.definition,
                status=PENDING,
                trigger=execution.trigger,
                parent_execution_id=execution.parent_execution_id,
                lineage=execution.lineage,
                steps=execution.steps_json(),
                post_jobs_state=execution.post_jobs_state,
                post_jobs=execution.post_jobs_json(),
                idempotency_key=execution.idempotency_key,
                owner=execution.owner,
                lease_until=now + timedelta(seconds=lease_seconds) if execution.owner else None,
                deadline=execution.deadline,
                created_at=now,
                updated_at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                # A concurrent trigger started this post-job first: answer with its execution.
                existing_child = await self._child(session, execution) if execution.parent_execution_id else None
                if existing_child is None:
                    raise
                return existing_child, True
            await self._event(
                session,
                row.id,
                "created",
                {"trigger": row.trigger, "parent_execution_id": row.parent_execution_id, "lineage": row.lineage},
            )
            return _execution(row), False

    async def _child(self, session: AsyncSession, execution: Execution) -> Execution | None:
        row = await session.scalar(
            select(ExecutionRow).where(
                ExecutionRow.parent_execution_id == execution.parent_execution_id,
                ExecutionRow.job_definition_id == execution.job_definition_id,
            )
        )
        return _execution(row) if row is not None else None

    async def _claim_idempotency_key(
        self, session: AsyncSession, execution: Execution, now: datetime
    ) -> Execution | None:
        key_row = await session.get(
            IdempotencyKeyRow, (execution.job_definition_id, execution.idempotency_key), with_for_update=True
        )
        if key_row is not None and key_row.created_at > now - IDEMPOTENCY_WINDOW:
            existing = await session.get(ExecutionRow, key_row.execution_id)
            if existing is not None:
                return _execution(existing)
        if key_row is None:
            try:
                async with session.begin_nested():
                    session.add(
                        IdempotencyKeyRow(
                            job_definition_id=execution.job_definition_id,
                            key=execution.idempotency_key,
                            execution_id=execution.id,
                            created_at=now,
                        )
                    )
            except IntegrityError:
                # Another request with the same key won the race: answer with its execution.
                key_row = await session.get(IdempotencyKeyRow, (execution.job_definition_id, execution.idempotency_key))
                existing = await session.get(ExecutionRow, key_row.execution_id) if key_row else None
                return _execution(existing) if existing is not None else None
        else:
            # The key is older than the window: it now names this execution.
            key_row.execution_id, key_row.created_at = execution.id, now
        return None

    # ------------------------------------------------------------------------------- read

    async def get(self, execution_id: str) -> Execution:
        async with self.db.read() as session:
            row = await session.get(ExecutionRow, execution_id)
            if row is None:
                raise NotFound(f"execution {execution_id!r} not found")
            return _execution(row)

    async def list_executions(
        self,
        p: Page,
        *,
        job_definition_id: str | None = None,
        status: str | None = None,
        parent_execution_id: str | None = None,
    ) -> tuple[list[Execution], int]:
        filters = []
        if job_definition_id:
            filters.append(ExecutionRow.job_definition_id == job_definition_id)
        if status:
            filters.append(ExecutionRow.status == status)
        if parent_execution_id:
            filters.append(ExecutionRow.parent_execution_id == parent_execution_id)
        column = getattr(ExecutionRow, p.order_by)
        order = [column.desc() if p.descending else column.asc(), ExecutionRow.id]
        async with self.db.read() as session:
            total = await session.scalar(select(func.count()).select_from(ExecutionRow).where(*filters))
            rows = await session.scalars(
                select(ExecutionRow).where(*filters).order_by(*order).limit(p.limit).offset(p.offset)
            )
            return [_execution(r) for r in rows], int(total or 0)

    async def events_after(self, execution_id: str, after: int, limit: int = 500) -> list[ExecutionEvent]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ExecutionEventRow)
                .where(ExecutionEventRow.execution_id == execution_id, ExecutionEventRow.id > after)
                .order_by(ExecutionEventRow.id)
                .limit(limit)
            )
            return [ExecutionEvent(r.id, r.execution_id, r.type, dict(r.payload), r.created_at) for r in rows]

    async def snapshot(self, execution_id: str) -> tuple[Execution, int]:
        """The execution and the id of the last event folded into it, read together."""
        async with self.db.read() as session:
            row = await session.get(ExecutionRow, execution_id)
            if row is None:
                raise NotFound(f"execution {execution_id!r} not found")
            last = await session.scalar(
                select(func.max(ExecutionEventRow.id)).where(ExecutionEventRow.execution_id == execution_id)
            )
            return _execution(row), int(last or 0)

    # ------------------------------------------------------------------------ ownership

    async def claim(self, execution_id: str, owner: str, lease_seconds: float) -> Execution | None:
        """Take (or keep) the right to drive an unfinished execution whose lease is free."""
        now = utcnow()
        async with self.db.session() as session:
            result = await session.execute(
                update(ExecutionRow)
                .where(
                    ExecutionRow.id == execution_id,
                    ExecutionRow.status.in_([PENDING, RUNNING]),
                    or_(ExecutionRow.owner.is_(None), ExecutionRow.owner == owner, ExecutionRow.lease_until < now),
                )
                .values(owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return None
            row = await session.get(ExecutionRow, execution_id, populate_existing=True)
            return _execution(row) if row else None

    async def renew(self, owner: str, execution_ids: list[str], lease_seconds: float) -> set[str]:
        """Extend the leases this instance holds; returns the ids it still owns."""
        if not execution_ids:
            return set()
        now = utcnow()
        async with self.db.session() as session:
            await session.execute(
                update(ExecutionRow)
                .where(
                    ExecutionRow.id.in_(execution_ids),
                    ExecutionRow.owner == owner,
                    ExecutionRow.status.in_([PENDING, RUNNING]),
                )
                .values(lease_until=now + timedelta(seconds=lease_seconds))
            )
            owned = await session.scalars(
                select(ExecutionRow.id).where(
                    ExecutionRow.id.in_(execution_ids),
                    ExecutionRow.owner == owner,
                    ExecutionRow.status.in_([PENDING, RUNNING]),
                )
            )
            return set(owned)

    async def release(self, owner: str, execution_ids: list[str]) -> None:
        """Give leases up at shutdown so another instance resumes at once."""
        if not execution_ids:
            return
        async with self.db.session() as session:
            await session.execute(
                update(ExecutionRow)
                .where(ExecutionRow.id.in_(execution_ids), ExecutionRow.owner == owner)
                .values(owner=None, lease_until=None)
            )

    async def orphans(self, limit: int = 100) -> list[str]:
        """Unfinished executions nobody drives: their lease expired (or was released)."""
        now = utcnow()
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ExecutionRow.id)
                .where(
                    ExecutionRow.status.in_([PENDING, RUNNING]),
                    or_(ExecutionRow.owner.is_(None), ExecutionRow.lease_until < now),
                )
                .order_by(ExecutionRow.created_at)
                .limit(limit)
            )
            return list(rows)

    async def pending_post_jobs(self, older_than: float, limit: int = 100) -> list[str]:
        """Succeeded executions whose post-job outcomes are still unrecorded."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ExecutionRow.id)
                .where(
                    ExecutionRow.post_jobs_state == POST_PENDING,
                    ExecutionRow.status == RUNNING,
                    ExecutionRow.updated_at < cutoff,
                )
                .limit(limit)
            )
            return list(rows)

    # ---------------------------------------------------------------------- transitions

    async def _cas(
        self,
        execution_id: str,
        owner: str | None,
        from_status: tuple[str, ...],
        values: dict[str, Any],
        events: list[tuple[str, dict[str, Any]]],
        extra: Any = None,
    ) -> bool:
        conditions = [ExecutionRow.id == execution_id, ExecutionRow.status.in_(from_status)]
        if owner is not None:
            conditions.append(ExecutionRow.owner == owner)
        if extra is not None:
            conditions.append(extra)
        async with self.db.session() as session:
            result = await session.execute(
                update(ExecutionRow).where(and_(*conditions)).values(updated_at=utcnow(), **values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            for type, payload in events:
                await self._event(session, execution_id, type, payload)
            return True

    async def start(self, execution: Execution, owner: str) -> bool:
        """pending -> running (a resumed execution is already running: nothing to do)."""
        if execution.status == RUNNING:
            return True
        return await self._cas(
            execution.id, owner, (PENDING,), {"status": RUNNING, "started_at": utcnow()}, [("started", {})]
        )

    async def save_steps(self, execution: Execution, owner: str, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Record step progress; False once the execution is no longer this owner's to drive."""
        return await self._cas(execution.id, owner, (RUNNING,), {"steps": execution.steps_json()}, events)

    async def finish(self, execution: Execution, owner: str | None, status: str, code: str, message: str) -> bool:
        """running (or pending) -> failed/cancelled/completed, with exactly one terminal event."""
        payload = {"error": {"code": code, "message": message}} if code else {}
        return await self._cas(
            execution.id,
            owner,
            (PENDING, RUNNING),
            {
                "status": status,
                "steps": execution.steps_json(),
                "error_code": code,
                "error_message": message,
                "completed_at": utcnow(),
                "owner": None,
                "lease_until": None,
            },
            [(status, payload)],
        )

    async def succeed(self, execution: Execution, owner: str) -> bool:
        """Every step succeeded: record the steps and post_jobs_state=pending in one transaction
        (or complete at once when there are no post-jobs)."""
        if not execution.post_jobs:
            return await self.finish(execution, owner, "completed", "", "")
        return await self._cas(
            execution.id,
            owner,
            (RUNNING,),
            {"steps": execution.steps_json(), "post_jobs_state": POST_PENDING},
            [("steps_succeeded", {"post_jobs": execution.post_jobs})],
        )

    async def record_post_jobs(
        self, execution_id: str, triggered: list[PostJobOutcome], skipped: list[PostJobOutcome]
    ) -> bool:
        """Store the outcomes and complete the execution (once)."""
        outcomes = outcomes_json(triggered, skipped)
        return await self._cas(
            execution_id,
            None,
            (RUNNING,),
            {
                "post_jobs_state": POST_DONE,
                "post_jobs": outcomes,
                "status": "completed",
                "completed_at": utcnow(),
                "owner": None,
                "lease_until": None,
            },
            [
                ("post_jobs_triggered", outcomes),
                ("completed", {}),
            ],
            extra=ExecutionRow.post_jobs_state == POST_PENDING,
        )

    async def cancel(self, execution_id: str, message: str = "cancelled by request") -> bool:
        return await self._cas(
            execution_id,
            None,
            (PENDING, RUNNING),
            {
                "status": CANCELLED,
                "error_code": "cancelled",
                "error_message": message,
                "completed_at": utcnow(),
                "owner": None,
                "lease_until": None,
            },
            [(CANCELLED, {"error": {"code": "cancelled", "message": message}})],
        )

    async def append_event(self, execution_id: str, type: str, payload: dict[str, Any]) -> None:
        async with self.db.session() as session:
            await self._event(session, execution_id, type, payload)

    # ------------------------------------------------------------------------ schedules

    async def claim_firing(self, job_definition_id: str, fire_at: datetime) -> bool:
        """True for exactly one replica per (definition, firing time)."""
        async with self.db.session() as session:
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(ScheduleFiringRow).values(
                            job_definition_id=job_definition_id, fire_at=fire_at, skipped="", created_at=utcnow()
                        )
                    )
            except IntegrityError:
                return False
            return True

    async def record_firing(
        self, job_definition_id: str, fire_at: datetime, *, execution_id: str = "", skipped: str = ""
    ) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(ScheduleFiringRow)
                .where(ScheduleFiringRow.job_definition_id == job_definition_id, ScheduleFiringRow.fire_at == fire_at)
                .values(execution_id=execution_id or None, skipped=skipped)
            )

    async def running_scheduled(self, job_definition_id: str) -> str | None:
        """The id of an unfinished scheduled execution of this definition, if any."""
        async with self.db.read() as session:
            return await session.scalar(
                select(ExecutionRow.id)
                .where(
                    ExecutionRow.job_definition_id == job_definition_id,
                    ExecutionRow.trigger == "schedule",
                    ExecutionRow.status.not_in(list(TERMINAL)),
                )
                .limit(1)
            )

    async def claim_auto_start(self, job_definition_id: str, version: int) -> bool:
        async with self.db.session() as session:
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(AutoStartRow).values(
                            job_definition_id=job_definition_id, version=version, created_at=utcnow()
                        )
                    )
            except IntegrityError:
                return False
            return True
