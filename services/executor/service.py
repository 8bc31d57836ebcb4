"""The ExecutorService gRPC servicer: translates messages to the domain and back."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import grpc

from libs.db import page
from libs.errors import FieldViolation, InvalidArgument
from libs.proto_json import (
    dict_to_struct,
    enum_to_str,
    enum_value,
    set_timestamp,
    struct_to_dict,
)
from quaero.v1 import (
    crawl_job_pb2,
    crawler_service_pb2,
    crawler_service_pb2_grpc,
    executor_service_pb2,
    executor_service_pb2_grpc,
    job_definition_pb2,
    source_pb2,
)
from services.executor.definitions import JobDefinition, Source, Step, validate_definition, validate_source
from services.executor.store import ExecutorStore, SaveMode

log = logging.getLogger(__name__)

_DEF_TYPE = job_definition_pb2.JobDefinitionType.DESCRIPTOR
_ON_ERROR = job_definition_pb2.OnError.DESCRIPTOR
_SOURCE_TYPE = source_pb2.SourceType.DESCRIPTOR
_CRAWL_SCALARS = (
    "max_depth",
    "max_pages",
    "allow_subdomains",
    "follow_links",
    "concurrency",
    "rate_limit",
    "obey_robots",
)
_CRAWL_LISTS = ("include_patterns", "exclude_patterns", "allowed_domains")


# ------------------------------------------------------------------------------ translation


def definition_from_proto(msg: job_definition_pb2.JobDefinition) -> JobDefinition:
    return JobDefinition(
        id=msg.id.strip(),
        name=msg.name,
        type=enum_to_str(_DEF_TYPE, msg.type) or "",
        description=msg.description,
        sources=list(msg.sources),
        steps=[
            Step(
                name=s.name,
                action=s.action.strip(),
                config=struct_to_dict(s.config),
                on_error=enum_to_str(_ON_ERROR, s.on_error) or ("fail" if s.on_error == 0 else f"#{s.on_error}"),
            )
            for s in msg.steps
        ],
        schedule=msg.schedule.strip(),
        timeout=msg.timeout.strip(),
        enabled=msg.enabled if msg.HasField("enabled") else True,
        auto_start=msg.auto_start,
        config=struct_to_dict(msg.config),
        post_jobs=[p.strip() for p in msg.post_jobs],
    )


def definition_to_proto(d: JobDefinition) -> job_definition_pb2.JobDefinition:
    msg = job_definition_pb2.JobDefinition(
        id=d.id,
        name=d.name,
        type=enum_value(_DEF_TYPE, d.type),
        description=d.description,
        sources=d.sources,
        steps=[
            job_definition_pb2.JobStep(
                name=s.name,
                action=s.action,
                config=dict_to_struct(s.config),
                on_error=enum_value(_ON_ERROR, s.on_error),
            )
            for s in d.steps
        ],
        schedule=d.schedule,
        timeout=d.timeout,
        enabled=d.enabled,
        auto_start=d.auto_start,
        config=dict_to_struct(d.config),
        post_jobs=d.post_jobs,
    )
    set_timestamp(msg.created_at, d.created_at)
    set_timestamp(msg.updated_at, d.updated_at)
    return msg


def crawl_config_to_dict(cfg: crawl_job_pb2.CrawlConfig) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(cfg, name) for name in _CRAWL_SCALARS if cfg.HasField(name)}
    out.update({name: list(getattr(cfg, name)) for name in _CRAWL_LISTS if getattr(cfg, name)})
    return out


def crawl_config_from_dict(data: Mapping[str, Any]) -> crawl_job_pb2.CrawlConfig:
    return crawl_job_pb2.CrawlConfig(**{k: v for k, v in data.items() if k in _CRAWL_SCALARS or k in _CRAWL_LISTS})


def source_from_proto(msg: source_pb2.Source) -> Source:
    return Source(
        id=msg.id.strip(),
        name=msg.name,
        type=enum_to_str(_SOURCE_TYPE, msg.type) or "web",
        base_url=msg.base_url.strip(),
        enabled=msg.enabled if msg.HasField("enabled") else True,
        crawl=crawl_config_to_dict(msg.crawl),
        include_patterns=list(msg.filters.include_patterns),
        exclude_patterns=list(msg.filters.exclude_patterns),
        auth_headers=dict(msg.auth.headers),
        auth_cookies=dict(msg.auth.cookies),
    )


def source_to_proto(s: Source, *, with_auth: bool = False) -> source_pb2.Source:
    """The API view of a source: secrets only in the crawler's snapshots (`with_auth`)."""
    msg = source_pb2.Source(
        id=s.id,
        name=s.name,
        type=enum_value(_SOURCE_TYPE, s.type),
        base_url=s.base_url,
        enabled=s.enabled,
        crawl=crawl_config_from_dict(s.crawl),
        filters=source_pb2.SourceFilters(include_patterns=s.include_patterns, exclude_patterns=s.exclude_patterns),
        has_auth=s.has_auth,
    )
    if with_auth and s.has_auth:
        msg.auth.headers.update(s.auth_headers)
        msg.auth.cookies.update(s.auth_cookies)
    set_timestamp(msg.created_at, s.created_at)
    set_timestamp(msg.updated_at, s.updated_at)
    return msg


# ---------------------------------------------------------------------------------- actions


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
        """Ask until the crawler answers (it may start after us)."""
        delay, waited = 0.1, 0.0
        while True:
            try:
                return await self.refresh(timeout=attempt_timeout)
            except grpc.aio.AioRpcError as exc:
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


# ---------------------------------------------------------------------------------- catalog


class Catalogue:
    """Definitions and sources: validation against the stored catalogue, then storage."""

    def __init__(self, store: ExecutorStore, actions: ActionCatalog) -> None:
        self.store = store
        self.actions = actions

    async def save_definition(self, d: JobDefinition, mode: SaveMode) -> tuple[JobDefinition, bool]:
        actions = await self.actions.names([s.action for s in d.steps])

        def validate(
            candidate: JobDefinition, sources: Collection[str], graph: Mapping[str, Sequence[str]]
        ) -> list[FieldViolation]:
            return validate_definition(candidate, actions=actions, known_sources=sources, graph=graph)

        return await self.store.save_definition(d, mode=mode, validate=validate)

    async def save_source(self, s: Source, mode: SaveMode, *, keep_auth: bool = False) -> tuple[Source, bool]:
        violations = validate_source(s)
        if violations:
            raise InvalidArgument(violations=violations)
        return await self.store.save_source(s, mode=mode, keep_auth=keep_auth)


# -------------------------------------------------------------------------------- servicer


def _type_filter(number: int, enum: Any) -> str | None:
    return enum_to_str(enum, number) if number else None


class ExecutorServicer(executor_service_pb2_grpc.ExecutorServiceServicer):
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.store = catalogue.store

    # job definitions

    async def CreateJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        saved, _ = await self.catalogue.save_definition(definition_from_proto(request.job_definition), "create")
        log.info("job definition created", extra={"job_definition_id": saved.id})
        return executor_service_pb2.CreateJobDefinitionResponse(job_definition=definition_to_proto(saved))

    async def GetJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        d = await self.store.get_definition(request.id)
        return executor_service_pb2.GetJobDefinitionResponse(job_definition=definition_to_proto(d))

    async def ListJobDefinitions(self, request, context):  # type: ignore[no-untyped-def]
        p = page(
            request.limit,
            request.offset,
            request.order_by,
            request.order_dir,
            allowed=("created_at", "updated_at", "name"),
        )
        items, total = await self.store.list_definitions(
            p,
            type=_type_filter(request.type, _DEF_TYPE),
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        return executor_service_pb2.ListJobDefinitionsResponse(
            job_definitions=[definition_to_proto(d) for d in items], total_count=total, limit=p.limit, offset=p.offset
        )

    async def UpdateJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        d = definition_from_proto(request.job_definition)
        d.id = request.id or d.id
        saved, changed = await self.catalogue.save_definition(d, "update")
        if changed:
            log.info("job definition updated", extra={"job_definition_id": saved.id, "version": saved.version})
        return executor_service_pb2.UpdateJobDefinitionResponse(job_definition=definition_to_proto(saved))

    async def DeleteJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        await self.store.delete_definition(request.id)
        log.info("job definition deleted", extra={"job_definition_id": request.id})
        return executor_service_pb2.DeleteJobDefinitionResponse()

    # sources

    async def CreateSource(self, request, context):  # type: ignore[no-untyped-def]
        s = source_from_proto(request.source)
        s.id = s.id or str(uuid.uuid4())
        saved, _ = await self.catalogue.save_source(s, "create")
        log.info("source created", extra={"source_id": saved.id})
        return executor_service_pb2.CreateSourceResponse(source=source_to_proto(saved))

    async def GetSource(self, request, context):  # type: ignore[no-untyped-def]
        return executor_service_pb2.GetSourceResponse(source=source_to_proto(await self.store.get_source(request.id)))

    async def ListSources(self, request, context):  # type: ignore[no-untyped-def]
        p = page(
            request.limit,
            request.offset,
            request.order_by,
            request.order_dir,
            allowed=("created_at", "updated_at", "name"),
        )
        items, total = await self.store.list_sources(
            p,
            type=_type_filter(request.type, _SOURCE_TYPE),
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        return executor_service_pb2.ListSourcesResponse(
            sources=[source_to_proto(s) for s in items], total_count=total, limit=p.limit, offset=p.offset
        )

    async def UpdateSource(self, request, context):  # type: ignore[no-untyped-def]
        s = source_from_proto(request.source)
        s.id = request.id or s.id
        saved, _ = await self.catalogue.save_source(s, "update", keep_auth=request.keep_auth and not s.has_auth)
        return executor_service_pb2.UpdateSourceResponse(source=source_to_proto(saved))

    async def DeleteSource(self, request, context):  # type: ignore[no-untyped-def]
        await self.store.delete_source(request.id)
        log.info("source deleted", extra={"source_id": request.id})
        return executor_service_pb2.DeleteSourceResponse()
