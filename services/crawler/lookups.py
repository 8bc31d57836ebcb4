"""What a worker reads of stored documents before and after a fetch, batched: the lookups its
fetches make one at a time within a turn of the event loop are answered by one query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import select

from libs.db import Database
from services.crawler.frontier import url_key
from services.crawler.store import DOCUMENTS, Stored, retrying

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batched(Generic[K, V]):
    """`get(group, key)` for many keys, answered by one `query(group, keys)` per group and turn
    of the event loop: the lookups made while a query runs wait for the next one."""

    def __init__(self, query: Callable[[str, Sequence[K]], Awaitable[dict[K, V]]]) -> None:
        self._query = query
        self._waiting: dict[str, dict[K, asyncio.Future[V | None]]] = {}
        self._flush: asyncio.Task[None] | None = None

    async def get(self, group: str, key: K) -> V | None:
        futures = self._waiting.setdefault(group, {})
        future = futures.get(key)
        if future is None:
            future = futures[key] = asyncio.get_running_loop().create_future()
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._answer())
        # Shielded: a fetch cancelled does not fail the lookups others wait on.
        return await asyncio.shield(future)

    async def _answer(self) -> None:
        await asyncio.sleep(0)  # the lookups made in this turn of the loop join the batch
        while self._waiting:
            waiting, self._waiting = self._waiting, {}
            for group, futures in waiting.items():
                try:
                    found = await self._query(group, list(futures))
                except Exception as exc:
                    _fail(futures.values(), exc)
                    continue
                for key, future in futures.items():
                    if not future.done():
                        future.set_result(found.get(key))


def _fail(futures: Iterable[asyncio.Future[V | None]], exc: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


class Lookups:
    """A recrawl's reads of its source's documents."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._stored: Batched[str, Stored] = Batched(self._read_stored)
        self._links: Batched[str, list[str]] = Batched(self._read_links)

    async def stored(self, source_id: str, url: str) -> Stored | None:
        """The page's document as stored (not removed), or None."""
        return await self._stored.get(source_id, url_key(url))

    async def links(self, document_id: str) -> list[str] | None:
        """The links a document keeps, or None if it keeps none (or is gone)."""
        return await self._links.get("", document_id)

    async def _read_stored(self, source_id: str, keys: Sequence[str]) -> dict[str, Stored]:
        async def read() -> dict[str, Stored]:
            async with self.db.read() as session:
                rows = await session.execute(
                    select(
                        DOCUMENTS.c.url_key, DOCUMENTS.c.id, DOCUMENTS.c.content_hash, DOCUMENTS.c.etag,
                        DOCUMENTS.c.last_modified, DOCUMENTS.c.links.is_not(None).label("has_links"),
                        DOCUMENTS.c.metadata["body_hash"].as_string().label("body_hash"),
                    ).where(
                        DOCUMENTS.c.source_id == source_id,
                        DOCUMENTS.c.url_key.in_(keys),
                        DOCUMENTS.c.removed_at.is_(None),
                    )
                )  # fmt: skip
                return {
                    r.url_key: Stored(
                        r.id, r.content_hash, r.etag, r.last_modified, r.has_links, body_hash=r.body_hash or None
                    )
                    for r in rows
                }

        return await retrying("reading stored documents", read)  # type: ignore[no-any-return]

    async def _read_links(self, _group: str, ids: Sequence[str]) -> dict[str, list[str]]:
        async def read() -> dict[str, list[str]]:
            async with self.db.read() as session:
                rows = await session.execute(
                    select(DOCUMENTS.c.id, DOCUMENTS.c.links).where(
                        DOCUMENTS.c.id.in_(ids), DOCUMENTS.c.links.is_not(None), DOCUMENTS.c.removed_at.is_(None)
                    )
                )
                return {r.id: list(r.links) for r in rows}

        return await retrying("reading stored links", read)  # type: ignore[no-any-return]
