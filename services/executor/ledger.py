"""The run ledger's tables and every SQL statement on them.

Every state change is a compare-and-set on `status` (and `owner` for the driving instance) and
appends its event in the same transaction, then wakes watchers after commit.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ForeignKey, Integer, String, Table, Text, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from libs.db import Database, Page, UtcDateTime, utcnow
from libs.errors import Aborted, NotFound
from services.executor.cancels import record_cancel
from services.executor.model import (
    CANCELLED,
    PENDING,
    POST_DONE,
    POST_PENDING,
    RUNNING,
    Execution,
    ExecutionEvent,
    PostJobOutcome,
    StepState,
    close_steps,
    outcomes_json,
)
from services.executor.outbox import enqueue as enqueue_webhooks
from services.executor.store import Base

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Seconds the replica ending an execution has to cancel its crawl jobs itself before any replica's
# durable cancel loop does (services/executor/cancels.py).
CANCEL_GRACE = 5.0


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
    parent_changes: Mapped[dict[str, Any] | None]


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


EXECUTIONS = cast(Table, ExecutionRow.__table__)
EVENTS = cast(Table, ExecutionEventRow.__table__)
KEYS = cast(Table, IdempotencyKeyRow.__table__)
FIRINGS = cast(Table, ScheduleFiringRow.__table__)
AUTO_STARTS = cast(Table, AutoStartRow.__table__)
_UNFINISHED = (PENDING, RUNNING)


def _outcomes(items: list[dict[str, Any]]) -> list[PostJobOutcome]:
    return [PostJobOutcome(**item) for item in items]


def _execution(row: Any) -> Execution:
    r = row._mapping if hasattr(row, "_mapping") else row
    return Execution(
        id=r["id"],
        job_definition_id=r["job_definition_id"],
        job_name=r["job_name"],
        definition=dict(r["definition"]),
        status=r["status"],
        trigger=r["trigger"],
        lineage=list(r["lineage"]),
        steps=[StepState.from_json(s) for s in r["steps"]],
        parent_execution_id=r["parent_execution_id"],
        post_jobs_state=r["post_jobs_state"],
        triggered=_outcomes(r["post_jobs"].get("triggered", [])),
        skipped=_outcomes(r["post_jobs"].get("skipped", [])),
        error_code=r["error_code"],
        error_message=r["error_message"],
        idempotency_key=r["idempotency_key"],
        owner=r["owner"],
        lease_until=r["lease_until"],
        deadline=r["deadline"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
        parent_changes=(r["parent_changes"] or {}).get("changes"),
        parent_crawl_job_ids=list((r["parent_changes"] or {}).get("crawl_job_ids", [])),
    )


_INSERT_EXECUTION = insert(EXECUTIONS)
_INSERT_EVENT = insert(EVENTS)


@functools.cache
def _cas_statement(
    columns: tuple[str, ...], from_status: tuple[str, ...], by_owner: bool, post_jobs_pending: bool | None
) -> Any:
    """One prepared UPDATE per shape: values travel as parameters, so SQLAlchemy neither rebuilds
    the statement nor recomputes its cache key on every state change."""
    conditions = [EXECUTIONS.c.id == bindparam("c_id"), EXECUTIONS.c.status.in_(from_status)]
    if by_owner:
        conditions.append(EXECUTIONS.c.owner == bindparam("c_owner"))
    if post_jobs_pending is True:
        conditions.append(EXECUTIONS.c.post_jobs_state == POST_PENDING)
    elif post_jobs_pending is False:
        conditions.append(EXECUTIONS.c.post_jobs_state != POST_PENDING)
    values: dict[str, Any] = {"updated_at": bindparam("v_updated_at", type_=EXECUTIONS.c.updated_at.type)}
    for column in columns:
        value: Any = bindparam(f"v_{column}", type_=EXECUTIONS.c[column].type)
        # A resumed execution keeps the time it first started.
        values[column] = func.coalesce(EXECUTIONS.c.started_at, value) if column == "started_at" else value
    return update(EXECUTIONS).where(and_(*conditions)).values(values)


def channel(execution_id: str) -> str:
    """The notification channel of one execution's events."""
    return "exec_" + execution_id.replace("-", "")


Events = list[tuple[str, dict[str, Any]]]


class Ledger:
    """All statements are SQLAlchemy Core on plain connections: the ledger is on the path of every
    execution, and a session's unit of work costs several times more CPU than the SQL itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _events(self, conn: AsyncConnection, execution_id: str, events: Events) -> None:
        if not events:
            return
        now = utcnow()
        rows = [{"execution_id": execution_id, "type": t, "payload": p or {}, "created_at": now} for t, p in events]
        await conn.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
        # The webhook deliveries announcing these events commit with them, or not at all.
        await enqueue_webhooks(self.db, conn, execution_id, [t for t, _ in events])
        if not self.db.is_postgres:
            # On PostgreSQL a trigger on execution_events notifies (migration 0003).
            await self.db.notify(conn, channel(execution_id))

    async def _get(self, conn: AsyncConnection, execution_id: str) -> Execution | None:
        row = (await conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id))).first()
        return _execution(row) if row is not None else None

    # ----------------------------------------------------------------------------- create

    async def create(self, execution: Execution, *, lease_seconds: float, events: Events) -> tuple[Execution, bool]:
        """Insert a new execution owned by `execution.owner`, with its first events.

        Returns (execution, replayed): with an idempotency key used for the same definition
        within 24 hours, or for a post-job the parent already started, the existing execution."""
        now = utcnow()
        values = {
            "id": execution.id,
            "job_definition_id": execution.job_definition_id,
            "job_name": execution.job_name,
            "definition": execution.definition,
            "status": execution.status,
            "trigger": execution.trigger,
            "parent_execution_id": execution.parent_execution_id,
            "lineage": execution.lineage,
            "steps": execution.steps_json(),
            "post_jobs_state": execution.post_jobs_state,
            "post_jobs": execution.post_jobs_json(),
            "error_code": "",
            "error_message": "",
            "idempotency_key": execution.idempotency_key,
            "owner": execution.owner,
            "lease_until": now + timedelta(seconds=lease_seconds) if execution.owner else None,
            "deadline": execution.deadline,
            "created_at": now,
            "updated_at": now,
            "started_at": now if execution.status == RUNNING else None,
            "completed_at": None,
            "parent_changes": execution.parent_changes_json(),
        }
        async with self.db.connection() as conn:
            if execution.idempotency_key:
                existing = await self._claim_idempotency_key(conn, execution, now)
                if existing is not None:
                    return existing, True
            if execution.parent_execution_id:
                child = await self._child(conn, execution)
                if child is not None:
                    return child, True
                try:
                    async with conn.begin_nested():
                        await conn.execute(_INSERT_EXECUTION, values)
                except IntegrityError:
                    # A concurrent trigger started this post-job first: answer with its execution.
                    child = await self._child(conn, execution)
                    if child is None:
                        raise
                    return child, True
            else:
                await conn.execute(_INSERT_EXECUTION, values)
            await self._events(conn, execution.id, events)
        return _execution(values), False

    async def _child(self, conn: AsyncConnection, execution: Execution) -> Execution | None:
        row = (
            await conn.execute(
                select(EXECUTIONS).where(
                    EXECUTIONS.c.parent_execution_id == execution.parent_execution_id,
                    EXECUTIONS.c.job_definition_id == execution.job_definition_id,
                )
            )
        ).first()
        return _execution(row) if row is not None else None

    async def _claim_idempotency_key(
        self, conn: AsyncConnection, execution: Execution, now: datetime
    ) -> Execution | None:
        key = (KEYS.c.job_definition_id == execution.job_definition_id) & (KEYS.c.key == execution.idempotency_key)
        found = (await conn.execute(select(KEYS).where(key).with_for_update())).first()
        if found is not None and found.created_at > now - IDEMPOTENCY_WINDOW:
            existing = await self._get(conn, found.execution_id)
            if existing is not None:
                return existing
        if found is not None:
            # The key is older than the window: it now names this execution.
            await conn.execute(update(KEYS).where(key).values(execution_id=execution.id, created_at=now))
            return None
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(KEYS).values(
                        job_definition_id=execution.job_definition_id,
                        key=execution.idempotency_key,
                        execution_id=execution.id,
                        created_at=now,
                    )
                )
        except IntegrityError:
            # Another request with the same key won the race: answer with its execution.
            winner = (await conn.execute(select(KEYS.c.execution_id).where(key))).scalar()
            return await self._get(conn, winner) if winner else None
        return None

    # ------------------------------------------------------------------------------- read

    async def get(self, execution_id: str) -> Execution:
        async with self.db.read_connection() as conn:
            execution = await self._get(conn, execution_id)
        if execution is None:
            raise NotFound(f"execution {execution_id!r} not found")
        return execution

    async def find_child(self, parent_id: str, job_definition_id: str) -> Execution | None:
        """The post-job execution of `job_definition_id` that `parent_id` started, if any."""
        async with self.db.read_connection() as conn:
            row = (
                await conn.execute(
                    select(EXECUTIONS).where(
                        EXECUTIONS.c.parent_execution_id == parent_id,
                        EXECUTIONS.c.job_definition_id == job_definition_id,
                    )
                )
            ).first()
        return _execution(row) if row is not None else None

    async def find_by_idempotency_key(self, job_definition_id: str, key: str) -> Execution | None:
        """The execution `key` started for this definition within the last 24 hours, if any."""
        async with self.db.read_connection() as conn:
            execution_id = (
                await conn.execute(
                    select(KEYS.c.execution_id).where(
                        KEYS.c.job_definition_id == job_definition_id,
                        KEYS.c.key == key,
                        KEYS.c.created_at > utcnow() - IDEMPOTENCY_WINDOW,
                    )
                )
            ).scalar()
            return await self._get(conn, execution_id) if execution_id else None

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
            filters.append(EXECUTIONS.c.job_definition_id == job_definition_id)
        if status:
            filters.append(EXECUTIONS.c.status == status)
        if parent_execution_id:
            filters.append(EXECUTIONS.c.parent_execution_id == parent_execution_id)
        column = EXECUTIONS.c[p.order_by]
        order = [column.desc() if p.descending else column.asc(), EXECUTIONS.c.id]
        async with self.db.read_connection() as conn:
            total = (await conn.execute(select(func.count()).select_from(EXECUTIONS).where(*filters))).scalar()
            rows = await conn.execute(
                select(EXECUTIONS).where(*filters).order_by(*order).limit(p.limit).offset(p.offset)
            )
            return [_execution(r) for r in rows], int(total or 0)

    async def events_after(self, execution_id: str, after: int, limit: int = 500) -> list[ExecutionEvent]:
        async with self.db.read_connection() as conn:
            rows = await conn.execute(
                select(EVENTS)
                .where(EVENTS.c.execution_id == execution_id, EVENTS.c.id > after)
                .order_by(EVENTS.c.id)
                .limit(limit)
            )
            return [ExecutionEvent(r.id, r.execution_id, r.type, dict(r.payload), r.created_at) for r in rows]

    async def snapshot(self, execution_id: str) -> tuple[Execution, int]:
        """The execution and the id of the last event folded into it, read together."""
        async with self.db.read_connection() as conn:
            execution = await self._get(conn, execution_id)
            if execution is None:
                raise NotFound(f"execution {execution_id!r} not found")
            last = (
                await conn.execute(select(func.max(EVENTS.c.id)).where(EVENTS.c.execution_id == execution_id))
            ).scalar()
            return execution, int(last or 0)

    # ------------------------------------------------------------------------ ownership

    async def claim(self, execution_id: str, owner: str, lease_seconds: float) -> Execution | None:
        """Take (or keep) the right to drive an unfinished execution whose lease is free."""
        now = utcnow()
        async with self.db.connection() as conn:
            row = (
                await conn.execute(
                    update(EXECUTIONS)
                    .where(
                        EXECUTIONS.c.id == execution_id,
                        EXECUTIONS.c.status.in_(_UNFINISHED),
                        or_(EXECUTIONS.c.owner.is_(None), EXECUTIONS.c.owner == owner, EXECUTIONS.c.lease_until < now),
                    )
                    .values(owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
                    .returning(*EXECUTIONS.c)
                )
            ).first()
            return _execution(row) if row is not None else None

    async def renew(self, owner: str, execution_ids: list[str], lease_seconds: float) -> set[str]:
        """Extend the leases this instance holds; returns the ids it still owns."""
        if not execution_ids:
            return set()
        now = utcnow()
        async with self.db.connection() as conn:
            rows = await conn.execute(
                update(EXECUTIONS)
                .where(
                    EXECUTIONS.c.id.in_(execution_ids),
                    EXECUTIONS.c.owner == owner,
                    EXECUTIONS.c.status.in_(_UNFINISHED),
                )
                .values(lease_until=now + timedelta(seconds=lease_seconds))
                .returning(EXECUTIONS.c.id)
            )
            return set(rows.scalars())

    async def release(self, owner: str, execution_ids: list[str]) -> None:
        """Give leases up at shutdown so another instance resumes at once."""
        if not execution_ids:
            return
        async with self.db.connection() as conn:
            await conn.execute(
                update(EXECUTIONS)
                .where(EXECUTIONS.c.id.in_(execution_ids), EXECUTIONS.c.owner == owner)
                .values(owner=None, lease_until=None)
            )

    async def orphans(self, limit: int = 100) -> list[str]:
        """Unfinished executions nobody drives: their lease expired (or was released)."""
        now = utcnow()
        async with self.db.read_connection() as conn:
            rows = await conn.execute(
                select(EXECUTIONS.c.id)
                .where(
                    EXECUTIONS.c.status.in_(_UNFINISHED),
                    or_(EXECUTIONS.c.owner.is_(None), EXECUTIONS.c.lease_until < now),
                )
                .order_by(EXECUTIONS.c.created_at)
                .limit(limit)
            )
            return list(rows.scalars())

    # ---------------------------------------------------------------------- transitions

    async def _cas(
        self,
        execution_id: str,
        owner: str | None,
        from_status: tuple[str, ...],
        values: dict[str, Any],
        events: Events,
        *,
        post_jobs_pending: bool | None = None,
        cancel_crawl_jobs: str | None = None,
    ) -> bool:
        """UPDATE ... WHERE id, status in from_status [, owner] [, post_jobs_state = pending when
        `post_jobs_pending`, <> pending when it is False]; appends `events` when it matched (and
        with `cancel_crawl_jobs`, a durable cancel of its crawl jobs for that reason). Returns
        whether it matched."""
        statement = _cas_statement(tuple(sorted(values)), from_status, owner is not None, post_jobs_pending)
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(c_id=execution_id, c_owner=owner, v_updated_at=utcnow())
        async with self.db.connection() as conn:
            result = await conn.execute(statement, params)
            if result.rowcount == 0:
                return False
            await self._events(conn, execution_id, events)
            if cancel_crawl_jobs:
                await record_cancel(conn, execution_id, cancel_crawl_jobs, first_in=CANCEL_GRACE)
            return True

    async def save_steps(self, execution: Execution, owner: str, events: Events, *, start: bool = False) -> bool:
        """Record step progress (with `start`, also pending -> running); False once the execution
        is no longer this owner's to drive (cancelled, or its lease was taken)."""
        if start:
            values = {"steps": execution.steps_json(), "status": RUNNING, "started_at": utcnow()}
            return await self._cas(execution.id, owner, _UNFINISHED, values, [("started", {}), *events])
        return await self._cas(execution.id, owner, (RUNNING,), {"steps": execution.steps_json()}, events)

    async def finish(
        self,
        execution: Execution,
        owner: str | None,
        status: str,
        code: str,
        message: str,
        events: Events = (),  # type: ignore[assignment]
    ) -> bool:
        """running (or pending) -> failed/cancelled/completed, with exactly one terminal event."""
        payload = {"error": {"code": code, "message": message}} if code else {}
        steps = close_steps(execution.steps_json(), status, message)
        values = {"status": status, "steps": steps, "error_code": code, "error_message": message,
                  "completed_at": utcnow(), "owner": None, "lease_until": None}  # fmt: skip
        # A timeout stops the crawl jobs of its step, durably (a step failure has none left running).
        cancel = "timeout" if code == "timeout" else None
        return await self._cas(
            execution.id, owner, _UNFINISHED, values, [*events, (status, payload)], cancel_crawl_jobs=cancel
        )

    async def succeed(self, execution: Execution, owner: str, events: Events = ()) -> bool:  # type: ignore[assignment]
        """Every step succeeded: record the steps and post_jobs_state=pending in one transaction
        (or complete at once when there are no post-jobs)."""
        if not execution.post_jobs:
            return await self.finish(execution, owner, "completed", "", "", events=events)
        values = {"steps": execution.steps_json(), "post_jobs_state": POST_PENDING}
        return await self._cas(
            execution.id, owner, (RUNNING,), values, [*events, ("steps_succeeded", {"post_jobs": execution.post_jobs})]
        )

    async def record_post_jobs(
        self, execution_id: str, triggered: list[PostJobOutcome], skipped: list[PostJobOutcome]
    ) -> bool:
        """Store the outcomes and complete the execution (once)."""
        outcomes = outcomes_json(triggered, skipped)
        values = {"post_jobs_state": POST_DONE, "post_jobs": outcomes, "status": "completed", "completed_at": utcnow(),
                  "owner": None, "lease_until": None}  # fmt: skip
        return await self._cas(
            execution_id,
            None,
            (RUNNING,),
            values,
            [("post_jobs_triggered", outcomes), ("completed", {})],
            post_jobs_pending=True,
        )

    async def cancel(self, execution_id: str, message: str = "cancelled by request") -> None:
        """pending/running -> cancelled, unless every step has succeeded already.

        NotFound for an unknown id. Aborted when it is finished, or when its steps succeeded and
        its post-jobs are starting (post_jobs_state pending): that run is past cancelling."""
        values = {"status": CANCELLED, "error_code": "cancelled", "error_message": message, "completed_at": utcnow(),
                  "owner": None, "lease_until": None}  # fmt: skip
        event = (CANCELLED, {"error": {"code": "cancelled", "message": message}})
        async with self.db.connection() as conn:
            # The steps are closed from what is stored under the row's lock, so a driver saving
            # its steps meanwhile is either before this (and closed here) or refused after it.
            row = (
                await conn.execute(
                    select(EXECUTIONS.c.status, EXECUTIONS.c.steps, EXECUTIONS.c.post_jobs_state)
                    .where(EXECUTIONS.c.id == execution_id)
                    .with_for_update()
                )
            ).first()
            if row is not None and row.status in _UNFINISHED and row.post_jobs_state != POST_PENDING:
                values["steps"] = close_steps(list(row.steps or []), CANCELLED, message)
                await conn.execute(
                    update(EXECUTIONS).where(EXECUTIONS.c.id == execution_id).values(**values, updated_at=utcnow())
                )
                await self._events(conn, execution_id, [event])
                # Durable: whatever becomes of this replica, some replica has the crawler cancel
                # the crawl jobs (services/executor/cancels.py); this one asks at once itself.
                await record_cancel(conn, execution_id, CANCELLED, first_in=CANCEL_GRACE)
                return
        # Say why from what is stored now, never report a cancel that did not happen.
        current = await self.get(execution_id)
        if current.terminal:
            raise Aborted(f"execution {execution_id!r} is already {current.status}")
        if current.post_jobs_state == POST_PENDING:
            raise Aborted(
                f"execution {execution_id!r} has succeeded and is starting its post-jobs: it can no longer be cancelled"
            )
        raise Aborted(f"execution {execution_id!r} could not be cancelled (status {current.status})")

    async def record_progress(
        self, execution_id: str, owner: str, payload: dict[str, Any], *, steps: list[dict[str, Any]] | None = None
    ) -> bool:
        """Append a step_progress event (with `steps`, record them too) while the execution is
        running and `owner` drives it. False, and nothing written, once it is cancelled, finished
        or driven by another owner: a late progress report never follows the terminal event."""
        values = {"steps": steps} if steps is not None else {}
        return await self._cas(execution_id, owner, (RUNNING,), values, [("step_progress", payload)])

    # ------------------------------------------------------------------------ schedules

    async def claim_firing(self, job_definition_id: str, fire_at: datetime) -> bool:
        """True for exactly one replica per (definition, firing time)."""
        return await self._insert_once(
            FIRINGS, job_definition_id=job_definition_id, fire_at=fire_at, skipped="", created_at=utcnow()
        )

    async def record_firing(
        self, job_definition_id: str, fire_at: datetime, *, execution_id: str = "", skipped: str = ""
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                update(FIRINGS)
                .where(FIRINGS.c.job_definition_id == job_definition_id, FIRINGS.c.fire_at == fire_at)
                .values(execution_id=execution_id or None, skipped=skipped)
            )

    async def running_scheduled(self, job_definition_id: str) -> str | None:
        """The id of an unfinished scheduled execution of this definition, if any."""
        async with self.db.read_connection() as conn:
            return (
                await conn.execute(
                    select(EXECUTIONS.c.id)
                    .where(
                        EXECUTIONS.c.job_definition_id == job_definition_id,
                        EXECUTIONS.c.trigger == "schedule",
                        EXECUTIONS.c.status.in_(_UNFINISHED),
                    )
                    .limit(1)
                )
            ).scalar()

    async def claim_auto_start(self, job_definition_id: str, version: int) -> bool:
        """True for exactly one replica per definition version."""
        return await self._insert_once(
            AUTO_STARTS, job_definition_id=job_definition_id, version=version, created_at=utcnow()
        )

    async def record_auto_start(self, job_definition_id: str, version: int, execution_id: str) -> None:
        """The execution a claimed auto_start started (left empty when it failed to start)."""
        async with self.db.connection() as conn:
            await conn.execute(
                update(AUTO_STARTS)
                .where(AUTO_STARTS.c.job_definition_id == job_definition_id, AUTO_STARTS.c.version == version)
                .values(execution_id=execution_id)
            )

    async def _insert_once(self, table: Any, **values: Any) -> bool:
        async with self.db.connection() as conn:
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(table).values(**values))
            except IntegrityError:
                return False
            return True
