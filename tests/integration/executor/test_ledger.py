"""The run ledger on SQLite and PostgreSQL: its compare-and-set transitions."""

from __future__ import annotations

import uuid

import pytest

from libs.db import Database
from libs.errors import Aborted, NotFound
from services.executor.ledger import Ledger
from services.executor.model import RUNNING, Execution, StepState

OWNER = "replica-1"


@pytest.fixture
def ledger(executor_db: Database) -> Ledger:
    return Ledger(executor_db)


async def running(ledger: Ledger, *, post_jobs: tuple[str, ...] = ()) -> Execution:
    execution = Execution(
        id=str(uuid.uuid4()),
        job_definition_id="d",
        job_name="D",
        definition={"id": "d", "post_jobs": list(post_jobs)},
        status=RUNNING,
        trigger="api",
        lineage=[],
        steps=[StepState(0, "r", "reindex", status=RUNNING, attempts=1)],
        owner=OWNER,
    )
    created, _ = await ledger.create(execution, lease_seconds=60, events=[("created", {}), ("started", {})])
    return created


async def types(ledger: Ledger, execution_id: str) -> list[str]:
    return [e.type for e in await ledger.events_after(execution_id, 0)]


async def test_cancel_a_running_execution(ledger: Ledger) -> None:
    execution = await running(ledger)
    await ledger.cancel(execution.id)
    cancelled = await ledger.get(execution.id)
    assert (cancelled.status, cancelled.error_code, cancelled.owner) == ("cancelled", "cancelled", None)
    assert await types(ledger, execution.id) == ["created", "started", "cancelled"]


async def test_cancel_refuses_an_execution_starting_its_post_jobs(ledger: Ledger) -> None:
    execution = await running(ledger, post_jobs=("next",))
    execution.steps[0].status = "completed"
    assert await ledger.succeed(execution, OWNER)
    with pytest.raises(Aborted, match="has succeeded and is starting its post-jobs"):
        await ledger.cancel(execution.id)
    current = await ledger.get(execution.id)
    assert (current.status, current.post_jobs_state) == ("running", "pending")
    assert "cancelled" not in await types(ledger, execution.id)
    assert await ledger.record_post_jobs(execution.id, [], [])  # the post-jobs still complete it


async def test_cancel_of_a_finished_execution_says_how_it_ended(ledger: Ledger) -> None:
    execution = await running(ledger)
    assert await ledger.finish(execution, OWNER, "completed", "", "")
    with pytest.raises(Aborted, match="is already completed"):
        await ledger.cancel(execution.id)
    assert (await ledger.get(execution.id)).status == "completed"


async def test_cancel_of_an_unknown_execution(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        await ledger.cancel(str(uuid.uuid4()))


async def test_progress_is_recorded_only_while_running_and_owned(ledger: Ledger) -> None:
    execution = await running(ledger)
    assert await ledger.record_progress(execution.id, OWNER, {"step_index": 0})
    assert not await ledger.record_progress(execution.id, "replica-2", {"step_index": 0})
    await ledger.cancel(execution.id)
    assert not await ledger.record_progress(execution.id, OWNER, {"step_index": 0})
    assert await types(ledger, execution.id) == ["created", "started", "step_progress", "cancelled"]
