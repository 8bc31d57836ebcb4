"""Carried documents: a recrawl's tasks carry their pages' stored documents.

- crawl_settle() (PostgreSQL) returns, with each task it leases, the page's stored document
  when the job is a recrawl, read in the statement that leases them (one index probe a task):
  its id, content hash, validators, whether it keeps links and the links themselves (joined by
  newlines, those of a document with at most `p_carried_links` of them) and the hash of the
  body it was parsed from (metadata.body_hash); `out_stored_known` says whether the job is a
  recrawl. Revision 0012's function, changed in exactly these places; nothing else changed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revision 0012's function, changed in exactly these places (each must occur once).
_CHANGES = (
    (
        "p_guard boolean, p_waiting int, p_publisher text,\n",
        "p_guard boolean, p_waiting int, p_publisher text, p_carried_links int,\n",
    ),
    (
        "OUT out_known_keys text[], OUT out_known_depths int[])\n",
        "OUT out_known_keys text[], OUT out_known_depths int[], OUT out_stored_known boolean,\n"
        "    OUT out_task_stored_ids text[], OUT out_task_stored_hashes text[], OUT out_task_stored_etags text[],\n"
        "    OUT out_task_stored_last_modifieds text[], OUT out_task_stored_has_links boolean[],\n"
        "    OUT out_task_stored_links text[], OUT out_task_stored_body_hashes text[])\n",
    ),
    (
        "RETURNING status, pending_urls, result_count, max_pages, concurrency, request_id, progress_event_at INTO v_job;\n",
        "RETURNING status, pending_urls, result_count, max_pages, concurrency, request_id, progress_event_at, recrawl\n"
        "        INTO v_job;\n",
    ),
    (
        "    out_request_id := v_job.request_id;\n",
        "    out_request_id := v_job.request_id;\n    out_stored_known := v_job.recrawl;\n",
    ),
    (
        """            RETURNING u.id, u.url, u.depth, u.attempts, u.redirect_hops, u.document_id
        )
        SELECT array_agg(id), array_agg(url), array_agg(depth), array_agg(attempts), array_agg(redirect_hops),
               array_agg(document_id)
        INTO out_task_ids, out_task_urls, out_task_depths, out_task_attempts, out_task_hops, out_task_documents
        FROM leased;
""",
        """            RETURNING u.id, u.url, u.url_key, u.depth, u.attempts, u.redirect_hops, u.document_id
        )
        SELECT array_agg(l.id), array_agg(l.url), array_agg(l.depth), array_agg(l.attempts),
               array_agg(l.redirect_hops), array_agg(l.document_id), array_agg(d.id), array_agg(d.content_hash),
               array_agg(d.etag), array_agg(d.last_modified), array_agg(d.links IS NOT NULL),
               array_agg(CASE WHEN cardinality(d.links) <= p_carried_links THEN array_to_string(d.links, E'\\n') END),
               array_agg(d.metadata ->> 'body_hash')
        INTO out_task_ids, out_task_urls, out_task_depths, out_task_attempts, out_task_hops, out_task_documents,
             out_task_stored_ids, out_task_stored_hashes, out_task_stored_etags, out_task_stored_last_modifieds,
             out_task_stored_has_links, out_task_stored_links, out_task_stored_body_hashes
        FROM leased l LEFT JOIN LATERAL (
            SELECT id, content_hash, etag, last_modified, links, metadata FROM documents
            WHERE v_job.recrawl AND source_id = p_source_id AND url_key = l.url_key AND removed_at IS NULL
            LIMIT 1) d ON true;
""",
    ),
)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"revision_{name[:4]}", Path(__file__).with_name(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous() -> tuple[str, Sequence[str]]:
    """Revision 0012's function and the settings it runs with."""
    base = _load("0009_freshness.py")
    return _load("0012_publishers.py")._function(base._FUNCTION), base._SETTINGS


def _function(previous: str) -> str:
    for old, new in _CHANGES:
        if previous.count(old) != 1:
            raise RuntimeError(f"revision 0012's crawl_settle() has not exactly one {old.strip()[:60]!r}")
        previous = previous.replace(old, new)
    return previous


def _install(function: str, settings: Sequence[str]) -> None:
    op.execute("DROP FUNCTION crawl_settle")
    op.execute(function)
    for setting in settings:
        op.execute(f"ALTER FUNCTION crawl_settle {setting}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        previous, settings = _previous()
        _install(_function(previous), settings)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _install(*_previous())
