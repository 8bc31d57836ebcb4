"""Translation between protobuf messages and the executor's domain objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libs.errors import InvalidArgument
from libs.proto_json import dict_to_struct, enum_to_str, enum_value, set_timestamp, struct_to_dict
from quaero.v1 import crawl_job_pb2, execution_pb2, job_definition_pb2, source_pb2
from services.executor.definitions import JobDefinition, Source, Step, Webhook
from services.executor.model import Execution, ExecutionEvent, WebhookDelivery

DEF_TYPE = job_definition_pb2.JobDefinitionType.DESCRIPTOR
ON_ERROR_ENUM = job_definition_pb2.OnError.DESCRIPTOR
POST_JOBS_WHEN_ENUM = job_definition_pb2.PostJobsWhen.DESCRIPTOR
SOURCE_TYPE = source_pb2.SourceType.DESCRIPTOR
# The fields of the CrawlConfig message, as libs/step_config checks them: one added there is
# carried through sources too.
_CRAWL_SCALARS = tuple(f.name for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields if not f.is_repeated)
_CRAWL_LISTS = tuple(f.name for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields if f.is_repeated)


def _enum_name(enum: Any, number: int, unset: str) -> str:
    """The enum value's name; `unset` for 0, and `#<number>` for a number this release does not
    know, so validation names the field instead of taking a default."""
    return enum_to_str(enum, number) or (unset if number == 0 else f"#{number}")


def definition_from_proto(msg: job_definition_pb2.JobDefinition) -> JobDefinition:
    return JobDefinition(
        id=msg.id.strip(),
        name=msg.name,
        type=_enum_name(DEF_TYPE, msg.type, ""),
        description=msg.description,
        sources=list(msg.sources),
        steps=[
            Step(
                name=s.name,
                action=s.action.strip(),
                config=struct_to_dict(s.config),
                on_error=_enum_name(ON_ERROR_ENUM, s.on_error, "fail"),
            )
            for s in msg.steps
        ],
        schedule=msg.schedule.strip(),
        timeout=msg.timeout.strip(),
        enabled=msg.enabled if msg.HasField("enabled") else True,
        auto_start=msg.auto_start,
        config=struct_to_dict(msg.config),
        post_jobs=[p.strip() for p in msg.post_jobs],
        post_jobs_when=_enum_name(POST_JOBS_WHEN_ENUM, msg.post_jobs_when, "success"),
        webhooks=[
            Webhook(url=w.url.strip(), events=[e.strip() for e in w.events], secret=w.secret) for w in msg.webhooks
        ],
    )


def step_to_proto(s: Step) -> job_definition_pb2.JobStep:
    return job_definition_pb2.JobStep(
        name=s.name, action=s.action, config=dict_to_struct(s.config), on_error=enum_value(ON_ERROR_ENUM, s.on_error)
    )


def definition_to_proto(d: JobDefinition) -> job_definition_pb2.JobDefinition:
    msg = job_definition_pb2.JobDefinition(
        id=d.id,
        name=d.name,
        type=enum_value(DEF_TYPE, d.type),
        description=d.description,
        sources=d.sources,
        steps=[step_to_proto(s) for s in d.steps],
        schedule=d.schedule,
        timeout=d.timeout,
        enabled=d.enabled,
        auto_start=d.auto_start,
        config=dict_to_struct(d.config),
        post_jobs=d.post_jobs,
        post_jobs_when=enum_value(POST_JOBS_WHEN_ENUM, d.post_jobs_when),
        # The secret is write-only: has_secret says one is stored.
        webhooks=[
            job_definition_pb2.Webhook(url=w.url, events=w.events, has_secret=bool(w.secret)) for w in d.webhooks
        ],
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
        type=_enum_name(SOURCE_TYPE, msg.type, "web"),
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
        type=enum_value(SOURCE_TYPE, s.type),
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


_EXEC_STATUS = execution_pb2.ExecutionStatus.DESCRIPTOR
_TRIGGER = execution_pb2.Trigger.DESCRIPTOR
_STEP_STATUS = execution_pb2.StepStatus.DESCRIPTOR
_POST_STATE = execution_pb2.PostJobsState.DESCRIPTOR
_SKIP_REASON = execution_pb2.PostJobSkipReason.DESCRIPTOR


def execution_to_proto(e: Execution) -> execution_pb2.Execution:
    msg = execution_pb2.Execution(
        id=e.id,
        job_definition_id=e.job_definition_id,
        job_name=e.job_name,
        status=enum_value(_EXEC_STATUS, e.status),
        trigger=enum_value(_TRIGGER, e.trigger),
        parent_execution_id=e.parent_execution_id or "",
        lineage=e.lineage,
        steps=[
            execution_pb2.ExecutionStep(
                index=s.index,
                name=s.name,
                action=s.action,
                status=enum_value(_STEP_STATUS, s.status),
                attempts=s.attempts,
                crawl_job_ids=s.crawl_job_ids,
                error=s.error,
            )
            for s in e.steps
        ],
        post_jobs=execution_pb2.PostJobs(
            state=enum_value(_POST_STATE, e.post_jobs_state),
            triggered=[
                execution_pb2.TriggeredPostJob(job_definition_id=t.job_definition_id, execution_id=t.execution_id)
                for t in e.triggered
            ],
            skipped=[
                execution_pb2.SkippedPostJob(
                    job_definition_id=s.job_definition_id, reason=enum_value(_SKIP_REASON, s.reason), detail=s.detail
                )
                for s in e.skipped
            ],
        ),
        idempotency_key=e.idempotency_key or "",
        changes=crawl_job_pb2.DocumentChanges(**e.changes),
    )
    if e.parent_changes is not None:
        msg.parent_changes.CopyFrom(crawl_job_pb2.DocumentChanges(**e.parent_changes))
    if e.error_code:
        msg.error.code, msg.error.message = e.error_code, e.error_message
    set_timestamp(msg.created_at, e.created_at)
    set_timestamp(msg.started_at, e.started_at)
    set_timestamp(msg.completed_at, e.completed_at)
    return msg


_DELIVERY_STATUS = execution_pb2.WebhookDeliveryStatus.DESCRIPTOR


def delivery_to_proto(d: WebhookDelivery) -> execution_pb2.WebhookDelivery:
    msg = execution_pb2.WebhookDelivery(
        id=d.id,
        execution_id=d.execution_id,
        url=d.url,
        event=d.event,
        status=enum_value(_DELIVERY_STATUS, d.status),
        attempts=d.attempts,
        last_status_code=d.last_status_code or 0,
        last_error=d.last_error,
    )
    if d.status == "pending":
        set_timestamp(msg.next_attempt_at, d.next_attempt_at)
    set_timestamp(msg.created_at, d.created_at)
    set_timestamp(msg.delivered_at, d.delivered_at)
    return msg


def event_to_proto(event: ExecutionEvent) -> execution_pb2.ExecutionEvent:
    msg = execution_pb2.ExecutionEvent(
        id=event.id, execution_id=event.execution_id, type=event.type, payload=dict_to_struct(event.payload)
    )
    set_timestamp(msg.created_at, event.created_at)
    return msg


def trigger_from_proto(number: int) -> str:
    """The trigger's name (api when unset); INVALID_ARGUMENT on `trigger` for a number this
    release does not know."""
    if number == 0:
        return "api"
    name = enum_to_str(_TRIGGER, number)
    if name is None:
        raise InvalidArgument.field("trigger", f"unknown value {number}")
    return name


def status_from_proto(number: int) -> str | None:
    """The status filter's name (None when unset); INVALID_ARGUMENT on `status` for a number this
    release does not know (it would otherwise list every execution)."""
    if number == 0:
        return None
    name = enum_to_str(_EXEC_STATUS, number)
    if name is None:
        raise InvalidArgument.field("status", f"unknown value {number}")
    return name
