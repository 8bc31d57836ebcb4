"""Starting, cancelling and watching executions; keeping leases and resuming orphans.

Every way of starting an execution (REST, gRPC, CLI, schedule, post-job) goes through
`Executions.execute`, so they all behave the same, post-jobs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from libs.db import utcnow
from libs.errors import FailedPrecondition, InvalidArgument
from libs.logs import log_context
from services.executor.catalogue import Catalogue
from services.executor.definitions import JobDefinition, validate_definition
from services.executor.ledger import Ledger, channel
from services.executor.model import CANCELLED, RUNNING, TERMINAL, Execution, ExecutionEvent, StepState
from services.executor.runner import Runner

log = logging.getLogger(__name__)


@dataclass
class WatchItem:
    """One message of a watch: the event (type "snapshot" first) and the execution as of it."""

    event: ExecutionEvent
    execution: Execution


def snapshot_of(definition: JobDefinition) -> dict[str, object]:
    """What an execution keeps of its definition: it runs this, whatever later edits say."""
    return {"id": definition.id, "version": definition.version, **definition.content()}


class Executions:
    def __init__(
        self,
        ledger: Ledger,
        catalogue: Catalogue,
        runner: Runner,
        *,
        owner: str,
        lease_seconds: float,
    ) -> None:
        self.ledger = ledger
        self.catalogue = catalogue
        self.runner = runner
        self.owner = owner
        self.lease_seconds = lease_seconds

    async def execute(
        self,
        definition_id: str,
        *,
        trigger: str = "api",
        idempotency_key: str = "",
        parent: Execution | None = None,
    ) -> tuple[Execution, bool]:
        """Record a new execution and drive it in the background; answer at once.

        NotFound for an unknown definition, FailedPrecondition when it is disabled, InvalidArgument
        when it no longer validates (a source was deleted, an action disappeared). A repeated
        idempotency key answers with the execution it started, whatever became of the definition
        since: the request was accepted then. Likewise a post-job its parent already started (a
        retried TriggerPostJobs) answers with that execution, whatever became of the definition."""
        if parent is not None:
            child = await self.ledger.find_child(parent.id, definition_id)
            if child is not None:
                return child, True
        if idempotency_key:
            existing = await self.ledger.find_by_idempotency_key(definition_id, idempotency_key)
            if existing is not None:
                return existing, True
        definition, sources = await self.catalogue.store.definition_with_sources(definition_id)
        if not definition.enabled:
            raise FailedPrecondition(f"job definition {definition_id!r} is disabled")
        actions = await self.catalogue.actions.names([s.action for s in definition.steps])
        violations = validate_definition(definition, actions=actions, known_sources=set(sources), graph=None)
        if violations:
            raise InvalidArgument(
                f"job definition {definition_id!r} is invalid: " + "; ".join(str(v) for v in violations), violations
            )
        now = utcnow()
        timeout = definition.timeout_seconds
        steps = [StepState(index=i, name=s.name, action=s.action) for i, s in enumerate(definition.steps)]
        # Recorded as started, its first step as sent (attempt 1), in the transaction that creates
        # the execution: the runner then sends that step as a replay, with no write before it.
        steps[0].status, steps[0].attempts = RUNNING, 1
        execution = Execution(
            id=str(uuid.uuid4()),
            job_definition_id=definition.id,
            job_name=definition.name,
            definition=snapshot_of(definition),
            status=RUNNING,
            trigger=trigger,
            lineage=[*parent.lineage, parent.job_definition_id] if parent else [],
            steps=steps,
            parent_execution_id=parent.id if parent else None,
            idempotency_key=idempotency_key or None,
            owner=self.owner,
            deadline=now + timedelta(seconds=timeout) if timeout else None,
            parent_changes=parent.changes if parent else None,
            parent_crawl_job_ids=parent.crawl_job_ids if parent else [],
        )
        created_event = {
            "trigger": trigger,
            "parent_execution_id": execution.parent_execution_id,
            "lineage": execution.lineage,
        }
        first_step = {"step_index": 0, "name": steps[0].name, "action": steps[0].action, "attempt": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("created", created_event),
            ("started", {}),
            ("step_started", first_step),
        ]
        created, replayed = await self.ledger.create(execution, lease_seconds=self.lease_seconds, events=events)
        if not replayed:
            with log_context(execution_id=created.id, job_definition_id=definition.id):
                log.info(
                    "execution started", extra={"trigger": trigger, "parent_execution_id": created.parent_execution_id}
                )
            if not self.runner.start(created):
                # Shutting down (an RPC finishing in the grace period): give it back at once, so
                # another replica, or this one's next start, resumes it without waiting for a lease.
                await self.ledger.release(self.owner, [created.id])
        return created, replayed

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel an unfinished execution: NotFound, or Aborted when its state forbids it (finished,
        or starting its post-jobs). Answers once the ledger says cancelled; stopping its driver
        and its crawl jobs goes on in the background (and outlasts a crawler that is down)."""
        await self.ledger.cancel(execution_id)
        execution = await self.ledger.get(execution_id)
        with log_context(execution_id=execution_id, job_definition_id=execution.job_definition_id):
            log.info("execution cancelled")
        self.runner.cancel_crawl_jobs(execution_id, "cancelled", stop_driver=True)
        return execution

    async def watch(
        self, execution_id: str, after_event_id: int = 0, *, replay: bool = False, poll: float = 2.0
    ) -> AsyncIterator[WatchItem]:
        """A snapshot (unless resuming after an event id, or replaying from the first event), then
        every event, until the execution is terminal."""
        notifier = self.ledger.db.notifier
        async with notifier.subscribe(channel(execution_id)) as woken:
            if replay:
                last = 0
                execution = await self.ledger.get(execution_id)
            elif after_event_id <= 0:
                execution, last = await self.ledger.snapshot(execution_id)
                yield WatchItem(ExecutionEvent(last, execution_id, "snapshot", {}, utcnow()), execution)
                if execution.terminal:
                    return
            else:
                last = after_event_id
                execution = await self.ledger.get(execution_id)
            while True:
                woken.clear()
                events = await self.ledger.events_after(execution_id, last)
                if events:
                    execution = await self.ledger.get(execution_id)
                    for event in events:
                        last = event.id
                        yield WatchItem(event, execution)
                        if event.type in TERMINAL:
                            return
                    continue
                if execution.terminal:
                    return  # resumed after its terminal event
                # No read of the execution here: every status change appends its event in the
                # same transaction, so the events read next carry the terminal one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), poll)

    # ------------------------------------------------------------------ leases, recovery

    async def maintain(self, stop: asyncio.Event, interval: float | None = None) -> None:
        """Renew our leases and resume executions nobody drives, until `stop`."""
        interval = interval or max(self.lease_seconds / 3, 0.2)
        while not stop.is_set():
            try:
                await self.renew_and_recover()
            except Exception:
                log.warning("lease maintenance failed; retrying", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def renew_and_recover(self) -> None:
        driving = self.runner.driving
        owned = await self.ledger.renew(self.owner, driving, self.lease_seconds)
        for lost in set(driving) - owned:
            current = await self.ledger.get(lost)
            if current.status not in TERMINAL:
                log.warning("lease lost; another instance drives the execution now", extra={"execution_id": lost})
            await self.runner.stop(lost)
        for execution_id in await self.ledger.orphans():
            if execution_id in self.runner.driving:
                continue
            claimed = await self.ledger.claim(execution_id, self.owner, self.lease_seconds)
            if claimed is None:
                continue
            with log_context(execution_id=execution_id, job_definition_id=claimed.job_definition_id):
                log.info(
                    "resuming execution", extra={"status": claimed.status, "post_jobs_state": claimed.post_jobs_state}
                )
            if claimed.status == CANCELLED:
                continue
            if not self.runner.start(claimed):
                await self.ledger.release(self.owner, [execution_id])

    async def shutdown(self) -> None:
        """Stop driving and give the leases back, so another instance resumes at once."""
        ids = await self.runner.close()
        with contextlib.suppress(Exception):
            await self.ledger.release(self.owner, ids)
