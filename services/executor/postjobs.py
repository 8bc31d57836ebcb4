"""TriggerPostJobs: start the post-jobs of a succeeded execution, once each, and record why any
were skipped. The executor calls this over gRPC at its own advertised address, whatever started
the parent, so with several replicas any of them may run it."""

from __future__ import annotations

import logging

from libs.errors import FailedPrecondition, InvalidArgument, NotFound, QuaeroError
from libs.logs import log_context
from services.executor.executions import Executions
from services.executor.ledger import Ledger
from services.executor.model import (
    COMPLETED,
    POST_DONE,
    POST_PENDING,
    RUNNING,
    Execution,
    PostJobOutcome,
    changed_anything,
)

log = logging.getLogger(__name__)


class PostJobs:
    def __init__(self, ledger: Ledger, executions: Executions) -> None:
        self.ledger = ledger
        self.executions = executions

    async def trigger(self, parent_id: str) -> Execution:
        """Start each post-job of `parent_id` (idempotent for ever) and complete the parent.

        FailedPrecondition when the parent did not succeed: never after failure, cancellation or
        timeout. A post-job problem is recorded as a skip and never fails the parent."""
        parent = await self.ledger.get(parent_id)
        if parent.post_jobs_state == POST_DONE or (parent.status == COMPLETED and not parent.post_jobs):
            # Done already, or it succeeded with no post-jobs to start: nothing to do, and no error.
            return parent
        if parent.status != RUNNING or parent.post_jobs_state != POST_PENDING:
            raise FailedPrecondition(
                f"execution {parent_id!r} did not succeed (status {parent.status}): its post-jobs do not run"
            )
        lineage = [*parent.lineage, parent.job_definition_id]
        triggered: list[PostJobOutcome] = []
        skipped: list[PostJobOutcome] = []
        with log_context(execution_id=parent.id, job_definition_id=parent.job_definition_id):
            for post_job in dict.fromkeys(parent.post_jobs):  # each id once, in order
                outcome = _unchanged(parent, post_job) or await self._start(parent, post_job, lineage)
                if outcome.reason:
                    skipped.append(outcome)
                    log.warning(
                        "post-job skipped",
                        extra={
                            "parent_execution_id": parent.id,
                            "post_job": post_job,
                            "reason": outcome.reason,
                            "detail": outcome.detail,
                        },
                    )
                else:
                    triggered.append(outcome)
            if await self.ledger.record_post_jobs(parent.id, triggered, skipped):
                log.info(
                    "post-jobs triggered",
                    extra={
                        "triggered": [t.job_definition_id for t in triggered],
                        "skipped": [s.job_definition_id for s in skipped],
                    },
                )
        # Whoever recorded first (we, or a concurrent retry that started the same executions).
        return await self.ledger.get(parent.id)

    async def _start(self, parent: Execution, post_job: str, lineage: list[str]) -> PostJobOutcome:
        if post_job in lineage:
            return PostJobOutcome(post_job, reason="cycle", detail=" -> ".join([*lineage, post_job]))
        try:
            child, replayed = await self.executions.execute(post_job, trigger="post_job", parent=parent)
        except NotFound:
            return PostJobOutcome(post_job, reason="not_found", detail=f"job definition {post_job!r} not found")
        except FailedPrecondition as exc:
            return PostJobOutcome(post_job, reason="disabled", detail=exc.message)
        except InvalidArgument as exc:
            return PostJobOutcome(post_job, reason="invalid", detail=exc.message)
        except QuaeroError as exc:
            return PostJobOutcome(post_job, reason="error", detail=exc.message)
        except Exception as exc:
            log.exception("post-job failed to start", extra={"post_job": post_job})
            return PostJobOutcome(post_job, reason="error", detail=f"failed to start: {type(exc).__name__}")
        if replayed:
            log.info("post-job already started by an earlier trigger", extra={"post_job": post_job, "child": child.id})
        return PostJobOutcome(post_job, execution_id=child.id)


def _unchanged(parent: Execution, post_job: str) -> PostJobOutcome | None:
    """With post_jobs_when "changed", a parent whose crawls changed nothing starts no post-job."""
    if parent.definition.get("post_jobs_when", "success") != "changed" or changed_anything(parent.changes):
        return None
    detail = "post_jobs_when is changed and the crawls found no new, changed or removed document"
    return PostJobOutcome(post_job, reason="no_changes", detail=detail)
