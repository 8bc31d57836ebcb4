"""A site's template taken out of its documents when a crawl completes.

Extraction sees one page at a time; the blocks a site repeats on most of its pages (a "Call us"
paragraph, a newsletter pitch in a `div` no name gives away) show themselves only across pages.
When a crawl job completes, in the transaction that completes it, the current documents of its
source are read per host: `TemplateCounter` counts on how many pages each block of Markdown
appears, and the blocks on most of them leave every page of that host (`drop_blocks`).

Done once, in the database, when nothing of the job is pending: any number of worker processes
(or the embedded one) store pages as they go, and none has to share counts with another. The
blocks a document lost are kept in its metadata (`template_blocks`, their fingerprints), so a
later crawl that stores only the pages that changed still counts the unchanged ones whole. A
document's `content_hash` stays the hash of the page as parsed: a recrawl tells a changed page
from an unchanged one as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.crawler.template import TemplateCounter, drop_blocks, fingerprints

# The metadata key of the fingerprints of the blocks a document lost as its site's template.
TEMPLATE_KEY = "template_blocks"
# Documents read (and their blocks fingerprinted, in a thread) per round trip: a source of any
# size is worked through in bounded memory, and the event loop keeps answering meanwhile.
BATCH = 200


async def drop_site_template(session: AsyncSession, documents: Any, source_id: str) -> int:
    """Take the template blocks out of the current documents of `source_id` (the `documents`
    table); returns how many documents changed."""
    counters: dict[str, TemplateCounter] = {}
    async for rows in _batches(session, documents, source_id):
        for host, blocks in await asyncio.to_thread(_page_blocks, rows):
            counters.setdefault(host, TemplateCounter()).add(blocks)
    templates = {host: found for host, counter in counters.items() if (found := counter.template())}
    if not templates:
        return 0
    changed = 0
    async for rows in _batches(session, documents, source_id, hosts=sorted(templates)):
        for pk, values in await asyncio.to_thread(_without_template, rows, templates):
            await session.execute(update(documents).where(documents.c.pk == pk).values(**values))
            changed += 1
    return changed


async def _batches(
    session: AsyncSession, documents: Any, source_id: str, hosts: Sequence[str] | None = None
) -> AsyncIterator[list[Any]]:
    """The source's current documents (pk, host, markdown, metadata), BATCH at a time by pk."""
    last = 0
    while True:
        query = (
            select(documents.c.pk, documents.c.host, documents.c.markdown, documents.c.metadata)
            .where(documents.c.source_id == source_id, documents.c.removed_at.is_(None), documents.c.pk > last)
            .order_by(documents.c.pk)
            .limit(BATCH)
        )
        if hosts is not None:
            query = query.where(documents.c.host.in_(hosts))
        rows = list(await session.execute(query))
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def _dropped_before(row: Any) -> list[str]:
    metadata = row.metadata if isinstance(row.metadata, Mapping) else {}
    recorded = metadata.get(TEMPLATE_KEY)
    return [str(name) for name in recorded] if isinstance(recorded, list) else []


def _page_blocks(rows: list[Any]) -> list[tuple[str, set[str]]]:
    """Each page's blocks: those of its Markdown and those it lost to the template before."""
    return [(row.host or "", {*fingerprints(row.markdown or ""), *_dropped_before(row)}) for row in rows]


def _without_template(rows: list[Any], templates: Mapping[str, set[str]]) -> list[tuple[int, dict[str, Any]]]:
    """The new values of the documents among `rows` that lose blocks to their host's template."""
    out = []
    for row in rows:
        markdown = row.markdown or ""
        kept = drop_blocks(markdown, templates[row.host or ""])
        if kept == markdown:
            continue
        lost = set(fingerprints(markdown)) - set(fingerprints(kept))
        word_count = len(kept.split())
        metadata = dict(row.metadata) if isinstance(row.metadata, Mapping) else {}
        metadata[TEMPLATE_KEY] = sorted(lost.union(_dropped_before(row)))
        metadata["word_count"] = word_count
        out.append((row.pk, {"markdown": kept, "word_count": word_count, "metadata": metadata}))
    return out
