"""Executions: a run of a job definition as recorded in the ledger (not a job)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
# A step waiting out its backoff before the next attempt.
RETRYING = "retrying"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
TRIGGERS = ("api", "cli", "schedule", "post_job")

CHANGE_KINDS = ("new", "changed", "unchanged", "removed")
# post_jobs_state: none (not triggered), pending (steps succeeded, outcomes not recorded), done.
POST_NONE, POST_PENDING, POST_DONE = "none", "pending", "done"


def close_steps(steps: list[dict[str, Any]], status: str, message: str) -> list[dict[str, Any]]:
    """The steps (as stored) of an execution that ends `status`, each one final: a step still
    running or retrying when the execution fails (a timeout, an internal error) fails with the
    execution's message; every other unfinished step (never started, or stopped by a cancel)
    is cancelled."""
    closed = []
    for step in steps:
        if step.get("status") in TERMINAL:
            closed.append(step)
            continue
        started = step.get("status") in (RUNNING, RETRYING)
        final = FAILED if status == FAILED and started else CANCELLED
        closed.append({**step, "status": final, "error": step.get("error") or (message if started else "")})
    return closed


@dataclass
class StepState:
    index: int
    name: str
    action: str
    status: str = PENDING
    # Attempts started so far; a step that was running when its executor died is resumed by
    # sending the same attempt again, which the crawler answers with the jobs it already has.
    attempts: int = 0
    crawl_job_ids: list[str] = field(default_factory=list)
    error: str = ""
    # Sources whose crawl job failed in the last attempt: a retry re-runs only these.
    failed_sources: list[str] = field(default_factory=list)
    # What each crawl job of the step found so far, by crawl job id: {new, changed, unchanged, removed}.
    changes: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepState:
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies and showed up in profiles of the execute path.
        return {
            "index": self.index, "name": self.name, "action": self.action, "status": self.status,
            "attempts": self.attempts, "crawl_job_ids": list(self.crawl_job_ids), "error": self.error,
            "failed_sources": list(self.failed_sources), "changes": {k: dict(v) for k, v in self.changes.items()},
        }  # fmt: skip


@dataclass
class PostJobOutcome:
    job_definition_id: str
    execution_id: str = ""
    reason: str = ""  # not_found | disabled | invalid | cycle | error | no_changes; empty when triggered
    detail: str = ""


@dataclass
class Execution:
    id: str
    job_definition_id: str
    job_name: str
    definition: dict[str, Any]
    status: str
    trigger: str
    lineage: list[str]
    steps: list[StepState]
    parent_execution_id: str | None = None
    post_jobs_state: str = POST_NONE
    triggered: list[PostJobOutcome] = field(default_factory=list)
    skipped: list[PostJobOutcome] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    idempotency_key: str | None = None
    owner: str | None = None
    lease_until: datetime | None = None
    deadline: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # A post-job's parent's change counts and crawl jobs, as they were when it was triggered.
    parent_changes: dict[str, int] | None = None
    parent_crawl_job_ids: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def post_jobs(self) -> list[str]:
        return list(self.definition.get("post_jobs", []))

    @property
    def changes(self) -> dict[str, int]:
        """The sum over its crawl jobs of what they found."""
        return sum_changes(job for step in self.steps for job in step.changes.values())

    @property
    def crawl_job_ids(self) -> list[str]:
        return [job_id for step in self.steps for job_id in step.crawl_job_ids]

    def parent_changes_json(self) -> dict[str, Any] | None:
        if self.parent_changes is None:
            return None
        return {"changes": dict(self.parent_changes), "crawl_job_ids": list(self.parent_crawl_job_ids)}

    def steps_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.steps]

    def post_jobs_json(self) -> dict[str, Any]:
        return outcomes_json(self.triggered, self.skipped)


def sum_changes(jobs: Any) -> dict[str, int]:
    total = dict.fromkeys(CHANGE_KINDS, 0)
    for job in jobs:
        for kind in CHANGE_KINDS:
            total[kind] += int(job.get(kind, 0))
    return total


def changed_anything(changes: dict[str, int]) -> bool:
    """Whether a crawl found a new, changed or removed document (unchanged ones do not count)."""
    return any(changes.get(kind, 0) > 0 for kind in ("new", "changed", "removed"))


def outcomes_json(triggered: list[PostJobOutcome], skipped: list[PostJobOutcome]) -> dict[str, Any]:
    return {"triggered": [asdict(t) for t in triggered], "skipped": [asdict(s) for s in skipped]}


@dataclass
class ExecutionEvent:
    id: int
    execution_id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass
class WebhookDelivery:
    """One announcement of an event to one webhook, as the outbox holds it."""

    id: str
    execution_id: str
    job_definition_id: str
    url: str
    event: str
    body: str
    secret: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None
