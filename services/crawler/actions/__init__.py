"""The step actions a job definition may use; ListActions reports them to the executor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionInfo:
    name: str
    description: str


ACTIONS: tuple[ActionInfo, ...] = (
    ActionInfo("crawl", "Crawl the definition's sources (or start_urls) into documents."),
    ActionInfo("corpus_summary", "Write a statistics document over a source's or the whole corpus's documents."),
    ActionInfo("reindex", "Rebuild the full-text search index."),
)
