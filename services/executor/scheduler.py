"""Cron schedules and auto_start: every firing goes through Executions.execute (post-jobs included).

Firings are claimed with a unique (job_definition_id, fire_at), so with several executor replicas
each runs once. A firing is skipped (and logged) while the previous scheduled execution of that
definition is still running. There is no catch-up after downtime: the next firing is computed
from now. Times are UTC. The clock is injectable, so tests need not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from croniter import croniter

from libs.db import utcnow
from libs.errors import QuaeroError
from libs.logs import log_context
from services.executor.definitions import JobDefinition
from services.executor.executions import Executions
from services.executor.ledger import Ledger
from services.executor.store import DEFINITIONS_CHANNEL, ExecutorStore

log = logging.getLogger(__name__)

RELOAD_EVERY = 30.0  # seconds; changes made through another replica arrive by notification sooner
# A reload that failed (the database away) is retried after 1 s, then 2, 4... up to the period.
RELOAD_BACKOFF_MAX = RELOAD_EVERY


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return at `when`, or earlier if `wake` is set."""


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        delay = (when - utcnow()).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)


def next_fire(schedule: str, after: datetime) -> datetime:
    """The first firing strictly after `after` (5 fields, 6 with seconds first, or @macros)."""
    seconds_first = len(schedule.split()) == 6
    return croniter(schedule, after, second_at_beginning=seconds_first).get_next(datetime)  # type: ignore[no-any-return]


@dataclass
class _Entry:
    definition: JobDefinition
    next_at: datetime


class Scheduler:
    def __init__(
        self, store: ExecutorStore, ledger: Ledger, executions: Executions, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.executions = executions
        self.clock = clock or SystemClock()
        self._entries: dict[str, _Entry] = {}
        self._wake = asyncio.Event()
        self._reload_wanted = True
        # When a failed reload is retried (None: none failed), and how many failed in a row.
        self._retry_at: datetime | None = None
        self._failures = 0
        # Definitions whose stored schedule never fires, with that schedule (warned once each).
        self._unschedulable: dict[str, str] = {}

    def reload(self) -> None:
        """Definitions changed: re-read them at once (called on create, update and delete)."""
        self._reload_wanted = True
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        self._reload_wanted = True  # also when restarted after a failure
        stopper = asyncio.create_task(self._wake_on(stop))
        notifier = self.store.db.notifier
        try:
            async with notifier.subscribe(DEFINITIONS_CHANNEL) as changed:
                watcher = asyncio.create_task(self._forward(changed))
                try:
                    await self._loop(stop)
                finally:
                    watcher.cancel()
        finally:
            stopper.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _forward(self, changed: asyncio.Event) -> None:
        while True:
            await changed.wait()
            changed.clear()
            self.reload()

    async def _loop(self, stop: asyncio.Event) -> None:
        last_reload = self.clock.now()
        while not stop.is_set():
            # Cleared before the checks below, so a reload asked for meanwhile is never lost.
            self._wake.clear()
            now = self.clock.now()
            retry_due = self._retry_at is not None and now >= self._retry_at
            if self._reload_wanted or retry_due or (now - last_reload).total_seconds() >= RELOAD_EVERY:
                self._reload_wanted = False
                last_reload = now
                try:
                    await self._reload(now)
                    self._retry_at, self._failures = None, 0
                except Exception:
                    # Never at once: a reload failing for good would spin.
                    delay = min(RELOAD_BACKOFF_MAX, 2.0**self._failures)
                    self._failures += 1
                    self._retry_at = datetime.fromtimestamp(now.timestamp() + delay, now.tzinfo)
                    log.warning("could not load schedules; retrying in %.0f s", delay, exc_info=True)
            due = [e for e in self._entries.values() if e.next_at <= now]
            for entry in due:
                fire_at = entry.next_at
                entry.next_at = next_fire(entry.definition.schedule, max(fire_at, now))
                try:
                    await self._fire(entry.definition, fire_at)
                except Exception:
                    # One firing going wrong (a lost connection, a definition deleted meanwhile)
                    # must not end the loop: every other schedule would silently stop.
                    log.exception(
                        "scheduled firing failed",
                        extra={"job_definition_id": entry.definition.id, "fire_at": fire_at.isoformat()},
                    )
            if due or self._reload_wanted:
                continue
            times = [e.next_at for e in self._entries.values()]
            if self._retry_at is not None:
                times.append(self._retry_at)
            wake_at = min(times, default=None)
            horizon = now.timestamp() + RELOAD_EVERY
            until = (
                wake_at if wake_at and wake_at.timestamp() < horizon else datetime.fromtimestamp(horizon, now.tzinfo)
            )
            await self.clock.sleep_until(until, self._wake)

    async def _reload(self, now: datetime) -> None:
        definitions = {d.id: d for d in await self.store.all_definitions() if d.enabled}
        entries: dict[str, _Entry] = {}
        for d in definitions.values():
            if d.schedule:
                old = self._entries.get(d.id)
                if old and old.definition.schedule == d.schedule:
                    old.definition = d
                    entries[d.id] = old
                elif (entry := self._entry(d, now)) is not None:
                    entries[d.id] = entry
                    log.info(
                        "definition scheduled",
                        extra={
                            "job_definition_id": d.id,
                            "schedule": d.schedule,
                            "next_fire": entries[d.id].next_at.isoformat(),
                            "owner": self.executions.owner,  # which replica (several may schedule it)
                        },
                    )
            if d.auto_start and await self.ledger.claim_auto_start(d.id, d.version):
                execution_id = await self._start(d, reason="auto_start")
                if execution_id:
                    await self.ledger.record_auto_start(d.id, d.version, execution_id)
        for gone in self._entries.keys() - entries.keys():
            log.info("definition unscheduled", extra={"job_definition_id": gone})
        self._entries = entries

    def _entry(self, d: JobDefinition, now: datetime) -> _Entry | None:
        """`d`'s schedule entry; None, with a warning once per schedule, when its stored schedule
        never fires (saved before such schedules were refused) or does not parse: that definition
        is not scheduled, and every other one still is."""
        try:
            return _Entry(d, next_fire(d.schedule, now))
        except Exception as exc:
            if self._unschedulable.get(d.id) != d.schedule:
                self._unschedulable[d.id] = d.schedule
                log.warning(
                    "definition not scheduled: its schedule never fires",
                    extra={"job_definition_id": d.id, "schedule": d.schedule, "error": str(exc)},
                )
            return None

    async def _fire(self, definition: JobDefinition, fire_at: datetime) -> None:
        if not await self.ledger.claim_firing(definition.id, fire_at):
            return  # another replica has it
        with log_context(job_definition_id=definition.id):
            running = await self.ledger.running_scheduled(definition.id)
            if running:
                await self.ledger.record_firing(definition.id, fire_at, skipped=f"execution {running} still running")
                log.warning(
                    "scheduled firing skipped: the previous scheduled run is still running",
                    extra={"fire_at": fire_at.isoformat(), "running_execution_id": running},
                )
                return
            execution_id = await self._start(definition, reason="schedule", fire_at=fire_at)
            await self.ledger.record_firing(
                definition.id,
                fire_at,
                execution_id=execution_id or "",
                skipped="" if execution_id else "failed to start",
            )

    async def _start(self, definition: JobDefinition, *, reason: str, fire_at: datetime | None = None) -> str | None:
        try:
            execution, _ = await self.executions.execute(definition.id, trigger="schedule")
        except QuaeroError as exc:
            log.warning("scheduled execution did not start", extra={"reason": reason, "error": exc.message})
            return None
        log.info(
            "scheduled execution started",
            extra={"reason": reason, "execution_id": execution.id, "fire_at": fire_at.isoformat() if fire_at else None},
        )
        return execution.id
