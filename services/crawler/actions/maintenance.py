"""The `corpus_summary`, `reindex` and `reextract` actions: idempotent, and they create no crawl jobs."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, text, update

from libs.db import Database, utcnow
from libs.errors import InvalidArgument
from libs.step_config import DOCUMENTS_CHOICES, PARENT_CRAWL_JOB_IDS
from services.crawler.frontier import url_key
from services.crawler.parse import ParsedPage, parse_page
from services.crawler.site_template import TEMPLATE_KEY
from services.crawler.store import CHANGED, DOCUMENTS, HTML, NEW, URLS, VERSIONS, decompress, dialect_insert
from services.crawler.template import drop_blocks

log = logging.getLogger(__name__)

# Summary documents live under their own source key, outside the corpus they describe.
SUMMARY_SOURCE = "quaero:corpus-summary"


def _source_ids(config: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    if config.get("source_id") is not None:
        if not isinstance(config["source_id"], str) or not config["source_id"]:
            raise InvalidArgument.field("config.source_id", "must be a source id")
        ids.append(config["source_id"])
    if config.get("source_ids") is not None:
        value = config["source_ids"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InvalidArgument.field("config.source_ids", "must be a list of source ids")
        ids.extend(value)
    return sorted(set(ids))


def _parent_changes(config: dict[str, Any]) -> ColumnElement[bool] | None:
    """With `documents: parent_changes`, the condition that keeps only the documents the parent
    execution's crawl jobs (sent by the executor) labelled new or changed; None for every document."""
    documents = config.get("documents", "all")
    if documents not in DOCUMENTS_CHOICES:
        raise InvalidArgument.field("config.documents", f"must be one of {', '.join(DOCUMENTS_CHOICES)}")
    if documents != "parent_changes":
        return None
    job_ids = config.get(PARENT_CRAWL_JOB_IDS) or []
    if not isinstance(job_ids, list) or not all(isinstance(j, str) for j in job_ids):
        raise InvalidArgument.field(f"config.{PARENT_CRAWL_JOB_IDS}", "must be a list of crawl job ids")
    changed = select(URLS.c.document_id).where(
        URLS.c.job_id.in_(job_ids), URLS.c.change.in_((NEW, CHANGED)), URLS.c.document_id.is_not(None)
    )
    return DOCUMENTS.c.id.in_(changed)


async def corpus_summary(db: Database, config: dict[str, Any]) -> dict[str, Any]:
    """Write (or rewrite) a statistics document over some sources' documents or the whole corpus
    (with `documents: parent_changes`, over the parent execution's new and changed ones)."""
    source_ids = _source_ids(config)
    scope = [DOCUMENTS.c.source_id != SUMMARY_SOURCE, DOCUMENTS.c.removed_at.is_(None)]
    if source_ids:
        scope.append(DOCUMENTS.c.source_id.in_(source_ids))
    only_changed = _parent_changes(config)
    if only_changed is not None:
        scope.append(only_changed)
    async with db.read() as session:
        totals = (
            await session.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(DOCUMENTS.c.word_count), 0),
                    func.min(DOCUMENTS.c.created_at),
                    func.max(DOCUMENTS.c.updated_at),
                ).where(*scope)
            )
        ).one()
        per_source = (
            await session.execute(
                select(DOCUMENTS.c.source_id, func.count(), func.coalesce(func.sum(DOCUMENTS.c.word_count), 0))
                .where(*scope)
                .group_by(DOCUMENTS.c.source_id)
                .order_by(func.count().desc(), DOCUMENTS.c.source_id)
            )
        ).all()
        hosts = (
            await session.execute(
                select(DOCUMENTS.c.host, func.count())
                .where(*scope)
                .group_by(DOCUMENTS.c.host)
                .order_by(func.count().desc(), DOCUMENTS.c.host)
                .limit(10)
            )
        ).all()
        recent = (
            await session.execute(
                select(DOCUMENTS.c.title, DOCUMENTS.c.url, DOCUMENTS.c.updated_at)
                .where(*scope)
                .order_by(DOCUMENTS.c.updated_at.desc(), DOCUMENTS.c.pk.desc())
                .limit(10)
            )
        ).all()
    count, words, first, last = int(totals[0]), int(totals[1]), totals[2], totals[3]
    label = ", ".join(source_ids) if source_ids else "all sources"
    if only_changed is not None:
        label += " (new and changed in the parent execution)"
    lines = [
        f"# Corpus summary: {label}",
        "",
        f"- Documents: {count}",
        f"- Words: {words}",
        f"- Average words per document: {words // count if count else 0}",
        f"- First stored: {_when(first)}",
        f"- Last updated: {_when(last)}",
        "",
        "## Sources",
        "",
        "| source | documents | words |",
        "|---|---|---|",
        *[f"| {s} | {n} | {w} |" for s, n, w in per_source],
        "",
        "## Top hosts",
        "",
        "| host | documents |",
        "|---|---|",
        *[f"| {h} | {n} |" for h, n in hosts],
        "",
        "## Most recently updated",
        "",
        *[f"- [{t or u}]({u}) ({_when(at)})" for t, u, at in recent],
        "",
    ]
    markdown = "\n".join(lines)
    url = f"quaero://corpus-summary/{'+'.join(source_ids) or 'all'}"
    if only_changed is not None:
        url += "/parent-changes"
    now = utcnow()
    metadata = {
        "kind": "corpus_summary",
        "source_ids": source_ids,
        "scope": "parent_changes" if only_changed is not None else "all",
        "documents": count,
        "words": words,
        "top_hosts": [{"host": h, "documents": int(n)} for h, n in hosts],
        "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    import hashlib
    import uuid

    content_hash = hashlib.sha256(markdown.encode()).hexdigest()
    async with db.session() as session:
        insert = dialect_insert(db, DOCUMENTS).values(
            id=str(uuid.uuid4()),
            source_id=SUMMARY_SOURCE,
            url_key=url_key(url),
            url=url,
            host="",
            title=f"Corpus summary: {label}",
            markdown=markdown,
            metadata=metadata,
            content_hash=content_hash,
            word_count=len(markdown.split()),
            created_at=now,
            updated_at=now,
        )
        excluded = insert.excluded
        document_id = (
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["source_id", "url_key"],
                    set_={
                        "title": excluded.title,
                        "markdown": excluded.markdown,
                        "metadata": excluded.metadata,
                        "content_hash": excluded.content_hash,
                        "word_count": excluded.word_count,
                        "updated_at": excluded.updated_at,
                    },
                ).returning(DOCUMENTS.c.id)
            )
        ).scalar_one()
    return {"document_id": document_id, "documents": count, "words": words}


async def reindex(db: Database, config: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the full-text index (PostgreSQL: REINDEX the GIN index concurrently, so crawls
    keep writing documents meanwhile; SQLite: FTS5 rebuild)."""
    dry_run = config.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidArgument.field("config.dry_run", "must be true or false")
    only_changed = _parent_changes(config)
    if only_changed is not None:
        return await _reindex_some(db, only_changed, dry_run)
    if dry_run or db.is_postgres:
        async with db.read() as session:
            count = int((await session.execute(select(func.count()).select_from(DOCUMENTS))).scalar_one())
        if dry_run:
            return {"documents": count, "dry_run": True}
        # REINDEX CONCURRENTLY cannot run inside a transaction block: an autocommit connection.
        async with db.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("REINDEX INDEX CONCURRENTLY ix_documents_search"))
        return {"documents": count, "dry_run": False}
    async with db.session() as session:
        count = int((await session.execute(select(func.count()).select_from(DOCUMENTS))).scalar_one())
        await session.execute(text("INSERT INTO documents_fts(documents_fts) VALUES ('rebuild')"))
    return {"documents": count, "dry_run": False}


async def _reindex_some(db: Database, which: ColumnElement[bool], dry_run: bool) -> dict[str, Any]:
    """Re-index only some documents: rewriting their title and Markdown as they are recomputes
    PostgreSQL's generated search vector and fires SQLite's FTS5 update trigger."""
    if dry_run:
        async with db.read() as session:
            count = int((await session.execute(select(func.count()).select_from(DOCUMENTS).where(which))).scalar_one())
        return {"documents": count, "dry_run": True, "scope": "parent_changes"}
    async with db.session() as session:
        result = await session.execute(
            update(DOCUMENTS).where(which).values(title=DOCUMENTS.c.title, markdown=DOCUMENTS.c.markdown)
        )
    return {"documents": int(result.rowcount or 0), "dry_run": False, "scope": "parent_changes"}  # type: ignore[attr-defined]


# Documents reextracted per transaction.
_REEXTRACT_BATCH = 50


async def reextract(db: Database, config: dict[str, Any], *, versions_kept: int) -> dict[str, Any]:
    """Run the current extraction again on the HTML each current document was stored from (kept
    by the workers, QUAERO_KEEP_HTML), without fetching anything. A document whose content
    comes out different is rewritten as a recrawl would: its previous content becomes a version,
    its `version` goes up. Documents without kept HTML (stored before it was kept) are counted as
    `without_html` and left as they are. Rerunning changes nothing more."""
    source_ids = _source_ids(config)
    dry_run = config.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidArgument.field("config.dry_run", "must be true or false")
    scope = [DOCUMENTS.c.source_id != SUMMARY_SOURCE, DOCUMENTS.c.removed_at.is_(None)]
    if source_ids:
        scope.append(DOCUMENTS.c.source_id.in_(source_ids))
    joined = DOCUMENTS.outerjoin(
        HTML, and_(HTML.c.source_id == DOCUMENTS.c.source_id, HTML.c.url_key == DOCUMENTS.c.url_key)
    )
    counts = {"documents": 0, "changed": 0, "unchanged": 0, "without_html": 0}
    after = 0
    while True:
        async with db.read() as session:
            rows = (
                await session.execute(
                    select(
                        DOCUMENTS.c.pk, DOCUMENTS.c.id, DOCUMENTS.c.url, DOCUMENTS.c.title, DOCUMENTS.c.markdown,
                        DOCUMENTS.c.metadata, DOCUMENTS.c.content_hash, DOCUMENTS.c.version, DOCUMENTS.c.updated_at,
                        HTML.c.body, HTML.c.charset,
                    )
                    .select_from(joined)
                    .where(*scope, DOCUMENTS.c.pk > after)
                    .order_by(DOCUMENTS.c.pk)
                    .limit(_REEXTRACT_BATCH)
                )
            ).all()  # fmt: skip
        if not rows:
            break
        after = rows[-1].pk
        counts["documents"] += len(rows)
        with_html = [r for r in rows if r.body is not None]
        counts["without_html"] += len(rows) - len(with_html)
        # Parsing is CPU work (a few ms a page): off the event loop the gRPC server shares.
        pages = await asyncio.to_thread(_extract_all, with_html)
        changed = [(r, p) for r, p in zip(with_html, pages, strict=True) if p.content_hash != r.content_hash]
        counts["unchanged"] += len(with_html) - len(changed)
        if changed and not dry_run:
            counts["changed"] += await _rewrite(db, changed, versions_kept)
        elif changed:
            counts["changed"] += len(changed)
    return {**counts, "dry_run": dry_run}


def _without_site_template(markdown: str, metadata: dict[str, Any] | None) -> str:
    """The new extraction without the blocks the document lost as its site's template when its
    crawl completed (services/crawler/site_template.py): reextracting never puts them back."""
    dropped = (metadata or {}).get(TEMPLATE_KEY)
    return drop_blocks(markdown, set(dropped)) if dropped else markdown


def _extract_all(rows: list[Any]) -> list[ParsedPage]:
    return [parse_page(r.url, decompress(r.body), r.charset) for r in rows]


async def _rewrite(db: Database, changed: list[tuple[Any, ParsedPage]], versions_kept: int) -> int:
    """Write the new extractions, each document's previous content kept as a version; a document
    a crawl rewrote since it was read is left to that crawl (compare-and-set on its hash)."""
    now = utcnow()
    rewritten = 0
    async with db.session() as session:
        for row, page in changed:
            done = (
                await session.execute(
                    update(DOCUMENTS)
                    .where(DOCUMENTS.c.id == row.id, DOCUMENTS.c.content_hash == row.content_hash)
                    .values(
                        title=page.title,
                        markdown=_without_site_template(page.markdown, row.metadata),
                        content_hash=page.content_hash,
                        word_count=page.word_count,
                        metadata={
                            **(row.metadata or {}),
                            "description": page.description,
                            "language": page.language,
                            "canonical": page.canonical,
                            "content_hash": page.content_hash,
                            "word_count": page.word_count,
                            "reextracted_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                        },
                        version=DOCUMENTS.c.version + 1,
                        updated_at=now,
                    )
                    .returning(DOCUMENTS.c.id)
                )
            ).first()
            if done is None:
                continue
            rewritten += 1
            if versions_kept <= 0:
                continue
            await session.execute(
                dialect_insert(db, VERSIONS).on_conflict_do_nothing(),
                {
                    "document_id": row.id, "version": row.version, "content_hash": row.content_hash,
                    "title": row.title, "markdown": row.markdown, "fetched_at": row.updated_at, "created_at": now,
                },
            )  # fmt: skip
            await session.execute(
                delete(VERSIONS).where(
                    VERSIONS.c.document_id == row.id, VERSIONS.c.version <= row.version - versions_kept
                )
            )
    return rewritten


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "never"
