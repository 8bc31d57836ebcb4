"""The catalogue: definitions and sources validated against the actions the crawler offers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence

import grpc

from libs.errors import FieldViolation, InvalidArgument
from libs.fetch_guard import FetchGuard
from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc
from services.executor.definitions import JobDefinition, Source, validate_definition, validate_source
from services.executor.store import ExecutorStore, SaveMode

log = logging.getLogger(__name__)


class ActionCatalog:
    """The step actions the crawler offers, asked with ListActions (and asked again on a miss)."""

    def __init__(self, crawler: crawler_service_pb2_grpc.CrawlerServiceStub) -> None:
        self._crawler = crawler
        self._names: frozenset[str] = frozenset()

    async def refresh(self, timeout: float = 5.0) -> frozenset[str]:
        response = await self._crawler.ListActions(crawler_service_pb2.ListActionsRequest(), timeout=timeout)
        self._names = frozenset(a.name for a in response.actions)
        return self._names

    async def wait_ready(self, *, attempt_timeout: float = 2.0) -> frozenset[str]:
        """Ask until the crawler answers (it may start after us). A crawler refusing our token
        will not change its mind: that stops the executor, saying why."""
        delay, waited = 0.1, 0.0
        while True:
            try:
                return await self.refresh(timeout=attempt_timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise RuntimeError(
                        f"the crawler refused this executor's API token ({exc.details()}): "
                        "give both the same QUAERO_API_TOKEN"
                    ) from None
                if waited >= 5 or delay >= 2:
                    log.warning("waiting for the crawler to list its actions", extra={"code": exc.code().name})
                    waited = 0.0
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)

    async def names(self, wanted: Collection[str] = ()) -> frozenset[str]:
        if any(w not in self._names for w in wanted if w):
            try:
                await self.refresh()
            except grpc.aio.AioRpcError:
                log.warning("crawler unreachable; checking actions against the last known list")
        return self._names


class Catalogue:
    """Definitions and sources: validation against the stored catalogue, then storage."""

    def __init__(self, store: ExecutorStore, actions: ActionCatalog, guard: FetchGuard | None = None) -> None:
        self.store = store
        self.actions = actions
        # Refuses webhook URLs that deliveries could never reach.
        self.guard = guard

    async def save_definition(self, d: JobDefinition, mode: SaveMode) -> tuple[JobDefinition, bool]:
        actions = await self.actions.names([s.action for s in d.steps])

        def validate(
            candidate: JobDefinition, sources: Collection[str], graph: Mapping[str, Sequence[str]]
        ) -> list[FieldViolation]:
            return validate_definition(candidate, actions=actions, known_sources=sources, graph=graph, guard=self.guard)

        return await self.store.save_definition(d, mode=mode, validate=validate)

    async def save_source(self, s: Source, mode: SaveMode, *, keep_auth: bool = False) -> tuple[Source, bool]:
        violations = validate_source(s)
        if violations:
            raise InvalidArgument(violations=violations)
        return await self.store.save_source(s, mode=mode, keep_auth=keep_auth)
