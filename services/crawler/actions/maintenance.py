"""The `corpus_summary` and `reindex` actions: idempotent, and they create no crawl jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from libs.db import Database, utcnow
from libs.errors import InvalidArgument
from services.crawler.frontier import url_key
from services.crawler.store import DOCUMENTS, dialect_insert

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


async def corpus_summary(db: Database, config: dict[str, Any]) -> dict[str, Any]:
    """Write (or rewrite) a statistics document over some sources' documents or the whole corpus."""
    source_ids = _source_ids(config)
    scope = [DOCUMENTS.c.source_id != SUMMARY_SOURCE, DOCUMENTS.c.removed_at.is_(None)]
    if source_ids:
        scope.append(DOCUMENTS.c.source_id.in_(source_ids))
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
    now = utcnow()
    metadata = {
        "kind": "corpus_summary",
        "source_ids": source_ids,
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


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "never"
