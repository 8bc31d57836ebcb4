"""The executor's tables and every SQL statement that touches them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import Boolean, Integer, String, Text, delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.db import TYPE_ANNOTATIONS, Database, Page, utcnow
from libs.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from libs.step_config import origin
from services.executor.definitions import JobDefinition, Source, Step, Webhook


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = TYPE_ANNOTATIONS


class JobDefinitionRow(Base):
    __tablename__ = "job_definitions"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    sources: Mapped[list[Any]]
    steps: Mapped[list[Any]]
    schedule: Mapped[str] = mapped_column(Text, default="")
    timeout: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_start: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]]
    post_jobs: Mapped[list[Any]]
    post_jobs_when: Mapped[str] = mapped_column(String(16), default="success")
    webhooks: Mapped[list[Any]]
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SourceRow(Base):
    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    crawl: Mapped[dict[str, Any]]
    filters: Mapped[dict[str, Any]]
    auth: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def _definition(row: JobDefinitionRow) -> JobDefinition:
    return JobDefinition(
        id=row.id, name=row.name, type=row.type, description=row.description, sources=list(row.sources),
        steps=[Step(**s) for s in row.steps], schedule=row.schedule, timeout=row.timeout, enabled=row.enabled,
        auto_start=row.auto_start, config=dict(row.config), post_jobs=list(row.post_jobs), version=row.version,
        post_jobs_when=row.post_jobs_when or "success", webhooks=[Webhook(**w) for w in row.webhooks or []],
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def _fill_definition(row: JobDefinitionRow, d: JobDefinition) -> None:
    row.name, row.type, row.description = d.name, d.type, d.description
    row.sources, row.steps = list(d.sources), [vars(s) for s in d.steps]
    row.schedule, row.timeout, row.enabled, row.auto_start = d.schedule, d.timeout, d.enabled, d.auto_start
    row.config, row.post_jobs = dict(d.config), list(d.post_jobs)
    row.post_jobs_when, row.webhooks = d.post_jobs_when, [vars(w) for w in d.webhooks]


def _keep_secrets(d: JobDefinition, stored: JobDefinition) -> None:
    """Secrets are write-only, so a definition read back and saved again has none: a webhook
    saved without one keeps the secret stored for the same URL."""
    secrets = {w.url: w.secret for w in stored.webhooks if w.secret}
    for hook in d.webhooks:
        if not hook.secret and hook.url in secrets:
            hook.secret = secrets[hook.url]


def _source(row: SourceRow) -> Source:
    auth = row.auth or {}
    return Source(
        id=row.id, name=row.name, type=row.type, base_url=row.base_url, enabled=row.enabled, crawl=dict(row.crawl),
        include_patterns=list(row.filters.get("include_patterns", [])),
        exclude_patterns=list(row.filters.get("exclude_patterns", [])),
        auth_headers=dict(auth.get("headers", {})), auth_cookies=dict(auth.get("cookies", {})),
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def _fill_source(row: SourceRow, s: Source, *, keep_auth: bool) -> None:
    row.name, row.type, row.base_url, row.enabled, row.crawl = s.name, s.type, s.base_url, s.enabled, dict(s.crawl)
    row.filters = {"include_patterns": list(s.include_patterns), "exclude_patterns": list(s.exclude_patterns)}
    if not keep_auth:
        row.auth = {"headers": dict(s.auth_headers), "cookies": dict(s.auth_cookies)} if s.has_auth else None


# Woken whenever a definition is created, changed or deleted (the scheduler re-reads them).
DEFINITIONS_CHANNEL = "definitions"

# Checks a definition against the rest of the catalogue: (definition, source ids, post-job graph).
Validator = Callable[[JobDefinition, Collection[str], Mapping[str, Sequence[str]]], list[FieldViolation]]
SaveMode = Literal["create", "update", "upsert"]


class ExecutorStore:
    def __init__(self, db: Database, *, cache_ttl: float = 2.0) -> None:
        self.db = db
        # Definitions (with their sources) read by executions: on every execute's path, and
        # rarely changed. Cleared by every write here and by the "definitions" notification of
        # other replicas; the TTL bounds staleness should a notification be lost.
        self._cache: dict[str, tuple[float, JobDefinition, dict[str, Source]]] = {}
        self._cache_ttl = cache_ttl
        # Bumped whenever the cache is cleared: a read that began before a write may have read the
        # old rows, and must not put them back once the write has cleared them.
        self._generation = 0

    def _forget(self) -> None:
        self._generation += 1
        self._cache.clear()

    @asynccontextmanager
    async def _catalogue_write(self) -> AsyncIterator[AsyncSession]:
        """A write to definitions or sources: tells every replica, and forgets what we cached."""
        try:
            async with self.db.session() as session:
                session.info["catalogue_changed"] = False
                yield session
                if session.info["catalogue_changed"]:
                    await self.db.notify(session, DEFINITIONS_CHANNEL)
        finally:
            self._forget()

    async def watch_changes(self, stop: asyncio.Event) -> None:
        """Forget cached definitions whenever any replica changes the catalogue."""
        async with self.db.notifier.subscribe(DEFINITIONS_CHANNEL) as changed:
            stopping = asyncio.create_task(stop.wait())
            try:
                while not stop.is_set():
                    waiter = asyncio.create_task(changed.wait())
                    await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    changed.clear()
                    self._forget()
            finally:
                stopping.cancel()

    async def _lock_catalogue(self, session: AsyncSession) -> None:
        # Cycle checks read every definition: serialise writers so two saves cannot close a cycle
        # together. SQLite's BEGIN IMMEDIATE already serialises them.
        if self.db.is_postgres:
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('quaero-definitions'))"))

    # ------------------------------------------------------------------------- definitions

    async def save_definition(
        self, d: JobDefinition, *, mode: SaveMode, validate: Validator
    ) -> tuple[JobDefinition, bool]:
        """Validate `d` against the stored catalogue and write it in one transaction.

        Returns the stored definition and whether anything changed (an upsert of identical
        content changes nothing, so its version, and auto_start, stay put)."""
        async with self._catalogue_write() as session:
            await self._lock_catalogue(session)
            graph = {
                row_id: list(post_jobs)
                for row_id, post_jobs in (
                    await session.execute(select(JobDefinitionRow.id, JobDefinitionRow.post_jobs))
                ).all()
                if row_id != d.id
            }
            source_ids = set((await session.scalars(select(SourceRow.id))).all())
            row = await session.get(JobDefinitionRow, d.id)
            if row is not None and mode != "create":
                _keep_secrets(d, _definition(row))
            violations = validate(d, source_ids, graph)
            if violations:
                raise InvalidArgument(violations=violations)
            now = utcnow()
            if row is None:
                if mode == "update":
                    raise NotFound(f"job definition {d.id!r} not found")
                row = JobDefinitionRow(id=d.id, version=1, created_at=now, updated_at=now)
                _fill_definition(row, d)
                session.add(row)
                try:
                    await session.flush()
                except IntegrityError as exc:
                    raise AlreadyExists(f"job definition {d.id!r} already exists") from exc
                session.info["catalogue_changed"] = True
                return _definition(row), True
            if mode == "create":
                raise AlreadyExists(f"job definition {d.id!r} already exists")
            if _definition(row).content() == d.content():
                return _definition(row), False
            _fill_definition(row, d)
            row.version += 1
            row.updated_at = now
            await session.flush()
            session.info["catalogue_changed"] = True
            return _definition(row), True

    async def get_definition(self, definition_id: str) -> JobDefinition:
        async with self.db.read() as session:
            row = await session.get(JobDefinitionRow, definition_id)
            if row is None:
                raise NotFound(f"job definition {definition_id!r} not found")
            return _definition(row)

    async def definition_with_sources(self, definition_id: str) -> tuple[JobDefinition, dict[str, Source]]:
        """A definition and the sources it names that exist, read together (one transaction).

        Served from the cache when fresh: callers must treat what they get as read-only."""
        cached = self._cache.get(definition_id)
        if cached is not None and time.monotonic() - cached[0] < self._cache_ttl:
            return cached[1], cached[2]
        generation = self._generation
        definition, sources = await self._read_definition_with_sources(definition_id)
        if generation == self._generation:  # else a write cleared the cache while we read
            self._cache[definition_id] = (time.monotonic(), definition, sources)
        return definition, sources

    async def _read_definition_with_sources(self, definition_id: str) -> tuple[JobDefinition, dict[str, Source]]:
        # Core rows (read like the ORM objects by attribute): this is on every execution's path.
        definitions, source_table = JobDefinitionRow.__table__, SourceRow.__table__
        async with self.db.read_connection() as conn:
            row = (await conn.execute(select(definitions).where(definitions.c.id == definition_id))).first()
            if row is None:
                raise NotFound(f"job definition {definition_id!r} not found")
            definition = _definition(row)  # type: ignore[arg-type]
            sources: dict[str, Source] = {}
            if definition.sources:
                rows = await conn.execute(select(source_table).where(source_table.c.id.in_(definition.sources)))
                sources = {r.id: _source(r) for r in rows}  # type: ignore[arg-type]
            return definition, sources

    async def list_definitions(
        self, p: Page, *, type: str | None = None, enabled: bool | None = None
    ) -> tuple[list[JobDefinition], int]:
        filters = []
        if type:
            filters.append(JobDefinitionRow.type == type)
        if enabled is not None:
            filters.append(JobDefinitionRow.enabled == enabled)
        column = getattr(JobDefinitionRow, p.order_by)
        order = [column.desc() if p.descending else column.asc(), JobDefinitionRow.id]
        async with self.db.read() as session:
            total = await session.scalar(select(func.count()).select_from(JobDefinitionRow).where(*filters))
            rows = await session.scalars(
                select(JobDefinitionRow).where(*filters).order_by(*order).limit(p.limit).offset(p.offset)
            )
            return [_definition(r) for r in rows], int(total or 0)

    async def all_definitions(self) -> list[JobDefinition]:
        async with self.db.read() as session:
            return [
                _definition(r) for r in await session.scalars(select(JobDefinitionRow).order_by(JobDefinitionRow.id))
            ]

    async def delete_definition(self, definition_id: str) -> None:
        async with self._catalogue_write() as session:
            result = await session.execute(delete(JobDefinitionRow).where(JobDefinitionRow.id == definition_id))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"job definition {definition_id!r} not found")
            session.info["catalogue_changed"] = True

    # ----------------------------------------------------------------------------- sources

    async def save_source(self, s: Source, *, mode: SaveMode, keep_auth: bool = False) -> tuple[Source, bool]:
        async with self._catalogue_write() as session:
            row = await session.get(SourceRow, s.id)
            now = utcnow()
            if row is None:
                if mode == "update":
                    raise NotFound(f"source {s.id!r} not found")
                row = SourceRow(id=s.id, created_at=now, updated_at=now)
                _fill_source(row, s, keep_auth=False)
                session.add(row)
                try:
                    await session.flush()
                except IntegrityError as exc:
                    raise AlreadyExists(f"source {s.id!r} already exists") from exc
                session.info["catalogue_changed"] = True
                return _source(row), True
            if mode == "create":
                raise AlreadyExists(f"source {s.id!r} already exists")
            stored = _source(row)
            stored_origin = origin(stored.base_url)  # None (unparseable) matches nothing
            if keep_auth and stored.has_auth and (stored_origin is None or stored_origin != origin(s.base_url)):
                # Credentials go only to the host they were given for (DESIGN section 8).
                raise InvalidArgument.field("auth", "credentials were given for another host; send them again")
            before = stored.content()
            _fill_source(row, s, keep_auth=keep_auth)
            if _source(row).content() == before:
                return _source(row), False
            row.updated_at = now
            await session.flush()
            session.info["catalogue_changed"] = True
            return _source(row), True

    async def get_source(self, source_id: str) -> Source:
        async with self.db.read() as session:
            row = await session.get(SourceRow, source_id)
            if row is None:
                raise NotFound(f"source {source_id!r} not found")
            return _source(row)

    async def find_sources(self, ids: Collection[str]) -> dict[str, Source]:
        async with self.db.read() as session:
            rows = await session.scalars(select(SourceRow).where(SourceRow.id.in_(list(ids))))
            return {row.id: _source(row) for row in rows}

    async def list_sources(
        self, p: Page, *, type: str | None = None, enabled: bool | None = None
    ) -> tuple[list[Source], int]:
        filters = []
        if type:
            filters.append(SourceRow.type == type)
        if enabled is not None:
            filters.append(SourceRow.enabled == enabled)
        column = getattr(SourceRow, p.order_by)
        order = [column.desc() if p.descending else column.asc(), SourceRow.id]
        async with self.db.read() as session:
            total = await session.scalar(select(func.count()).select_from(SourceRow).where(*filters))
            rows = await session.scalars(
                select(SourceRow).where(*filters).order_by(*order).limit(p.limit).offset(p.offset)
            )
            return [_source(r) for r in rows], int(total or 0)

    async def delete_source(self, source_id: str) -> None:
        async with self._catalogue_write() as session:
            result = await session.execute(delete(SourceRow).where(SourceRow.id == source_id))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"source {source_id!r} not found")
            session.info["catalogue_changed"] = True
