"""The step actions a job definition may use; ListActions reports them to the executor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from libs.amqp import TaskQueue
from libs.db import Database
from libs.errors import QuaeroError
from libs.logs import log_context
from libs.proto_json import dict_to_struct, struct_to_dict
from quaero.v1 import crawler_service_pb2
from services.crawler.store import CrawlStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionInfo:
    name: str
    description: str


ACTIONS: tuple[ActionInfo, ...] = (
    ActionInfo("crawl", "Crawl the definition's sources (or start_urls) into documents."),
    ActionInfo("corpus_summary", "Write a statistics document over a source's or the whole corpus's documents."),
    ActionInfo("reindex", "Rebuild the full-text search index."),
    ActionInfo(
        "reextract",
        "Run the current extraction again on the kept HTML of a source's (or every) document, without refetching.",
    ),
)
_MAINTENANCE = ("corpus_summary", "reindex", "reextract")

Emit = Callable[[crawler_service_pb2.StepEvent], None]


class StepRunner:
    """Runs one StepCall and emits its events: accepted, progress..., exactly one finished."""

    def __init__(self, db: Database, store: CrawlStore, queue: TaskQueue, *, versions_kept: int = 5) -> None:
        from services.crawler.actions.crawl import CrawlAction

        self.db = db
        self.versions_kept = versions_kept
        self.crawl = CrawlAction(db, store, queue)

    async def run(self, call: crawler_service_pb2.StepCall, emit: Emit) -> None:
        from services.crawler.actions.maintenance import corpus_summary, reextract, reindex

        def finished(ok: bool, error: str = "", result: dict[str, object] | None = None) -> None:
            emit(
                crawler_service_pb2.StepEvent(
                    execution_id=call.execution_id,
                    step_index=call.step_index,
                    attempt=call.attempt,
                    finished=crawler_service_pb2.StepFinished(
                        ok=ok, error=error, result=dict_to_struct(result) if result else None
                    ),
                )
            )

        action = call.step.action
        with log_context(execution_id=call.execution_id, job_definition_id=call.job_definition_id):
            try:
                if action == "crawl":
                    await self.crawl.run(call, emit)
                    return
                if action not in _MAINTENANCE:
                    finished(False, f"unknown action {action!r} (known: {', '.join(a.name for a in ACTIONS)})")
                    return
                emit(
                    crawler_service_pb2.StepEvent(
                        execution_id=call.execution_id,
                        step_index=call.step_index,
                        attempt=call.attempt,
                        accepted=crawler_service_pb2.StepAccepted(),
                    )
                )
                config = struct_to_dict(call.step.config)
                if action == "corpus_summary":
                    result = await corpus_summary(self.db, config)
                elif action == "reindex":
                    result = await reindex(self.db, config)
                else:
                    result = await reextract(self.db, config, versions_kept=self.versions_kept)
                finished(True, result=result)
            except QuaeroError as exc:
                finished(False, exc.message)
            except Exception as exc:
                log.exception("step %s (%s) failed", call.step_index, action)
                finished(False, f"internal error in the crawler: {type(exc).__name__}")
