"""Rows of the crawler's tables as protobuf messages (what every RPC and step event returns)."""

from __future__ import annotations

from typing import Any

from libs.proto_json import dict_to_struct, enum_to_str, enum_value, plain, set_timestamp
from libs.step_config import CRAWL_RANGES, clamp_crawl_option
from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.store import (
    CrawlJobRow,
    CrawlUrlRow,
    DocumentRow,
    DocumentVersionRow,
    JobEventRow,
    JobLogRow,
    changes_of,
    progress_of,
)

_STATUS = crawl_job_pb2.CrawlJobStatus.DESCRIPTOR
_URL_STATE = crawl_job_pb2.CrawlUrlState.DESCRIPTOR
_CHANGE = crawl_job_pb2.DocumentChangeKind.DESCRIPTOR
LEVEL_BY_NUMBER = {
    10: crawl_job_pb2.LOG_LEVEL_DEBUG,
    20: crawl_job_pb2.LOG_LEVEL_INFO,
    30: crawl_job_pb2.LOG_LEVEL_WARN,
    40: crawl_job_pb2.LOG_LEVEL_ERROR,
}
_CONFIG_FIELDS = {f.name for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields}


def status_value(status: str) -> Any:
    return enum_value(_STATUS, status)


def status_name(number: int) -> str | None:
    return enum_to_str(_STATUS, number)


def url_state_name(number: int) -> str | None:
    return enum_to_str(_URL_STATE, number)


def config_message(config: dict[str, Any]) -> crawl_job_pb2.CrawlConfig:
    """A job's config. A number outside its documented range (a job stored by a release that did
    not check ranges at save) reads as the nearest end of the range, so the job still lists; the
    row itself is left as it was."""
    values = {k: v for k, v in config.items() if k in _CONFIG_FIELDS}
    for key in CRAWL_RANGES.keys() & values.keys():
        values[key] = clamp_crawl_option(key, values[key])
    return crawl_job_pb2.CrawlConfig(**values)


def change_value(change: str | None) -> Any:
    return enum_value(_CHANGE, change) if change else crawl_job_pb2.DOCUMENT_CHANGE_KIND_UNSPECIFIED


def change_name(number: int) -> str | None:
    return enum_to_str(_CHANGE, number)


def changes_message(job: Any) -> crawl_job_pb2.DocumentChanges:
    return crawl_job_pb2.DocumentChanges(**changes_of(job))


def progress_message(job: Any) -> crawl_job_pb2.CrawlProgress:
    return crawl_job_pb2.CrawlProgress(**progress_of(job))


def job_message(job: CrawlJobRow) -> crawl_job_pb2.CrawlJob:
    meta = job.metadata_ or {}
    msg = crawl_job_pb2.CrawlJob(
        id=job.id,
        name=job.name,
        source_id=job.source_id,
        source_type=job.source_type,
        status=status_value(job.status),
        config=config_message(job.config),
        seed_urls=list(job.seed_urls),
        progress=progress_message(job),
        metadata=crawl_job_pb2.CrawlJobMetadata(
            job_definition_id=meta.get("job_definition_id") or "",
            execution_id=meta.get("execution_id") or "",
            step=int(meta.get("step") or 0),
            attempt=int(meta.get("attempt") or 0),
            rerun_of=meta.get("rerun_of") or "",
        ),
        result_count=job.result_count,
        failed_count=job.failed_urls,
        error=job.error,
        changes=changes_message(job),
    )
    set_timestamp(msg.created_at, job.created_at)
    set_timestamp(msg.started_at, job.started_at)
    set_timestamp(msg.completed_at, job.completed_at)
    return msg


def step_job(job: CrawlJobRow) -> crawler_service_pb2.StepCrawlJob:
    return crawler_service_pb2.StepCrawlJob(
        crawl_job_id=job.id,
        source_id=job.source_id,
        status=status_value(job.status),
        progress=progress_message(job),
        error=job.error,
        changes=changes_message(job),
    )


def event_message(event: JobEventRow) -> crawl_job_pb2.JobEvent:
    msg = crawl_job_pb2.JobEvent(
        id=event.id, job_id=event.job_id, type=event.type, payload=dict_to_struct(plain(event.payload))
    )
    set_timestamp(msg.created_at, event.created_at)
    return msg


def log_message(entry: JobLogRow) -> crawl_job_pb2.JobLog:
    msg = crawl_job_pb2.JobLog(
        level=LEVEL_BY_NUMBER.get(entry.level, crawl_job_pb2.LOG_LEVEL_UNSPECIFIED), message=entry.message
    )
    set_timestamp(msg.timestamp, entry.created_at)
    return msg


def url_message(row: CrawlUrlRow) -> crawl_job_pb2.CrawlUrl:
    return crawl_job_pb2.CrawlUrl(
        id=row.id,
        url=row.url,
        depth=row.depth,
        state=enum_value(_URL_STATE, row.state),
        reason=row.reason,
        http_status=row.http_status or 0,
        redirected_to=row.redirected_to or "",
        document_id=row.document_id or "",
        attempts=row.attempts,
        discovered_from=row.discovered_from or "",
        change=change_value(row.change),
    )


def document_message(doc: DocumentRow, *, markdown: bool = False, snippet: str = "") -> crawl_job_pb2.Document:
    msg = crawl_job_pb2.Document(
        id=doc.id,
        source_id=doc.source_id,
        job_id=doc.job_id or "",
        url=doc.url,
        title=doc.title,
        metadata=dict_to_struct(plain(doc.metadata_ or {})),
        markdown=doc.markdown if markdown else "",
        snippet=snippet,
        etag=doc.etag or "",
        last_modified=doc.last_modified or "",
        version=doc.version or 1,
    )
    set_timestamp(msg.created_at, doc.created_at)
    set_timestamp(msg.updated_at, doc.updated_at)
    set_timestamp(msg.removed_at, doc.removed_at)
    return msg


def change_message(row: dict[str, Any]) -> crawl_job_pb2.DocumentChange:
    return crawl_job_pb2.DocumentChange(
        url=row["url"],
        document_id=row["document_id"] or "",
        change=change_value(row["change"]),
        content_hash=row["content_hash"] or "",
        previous_hash=row["previous_hash"] or "",
    )


def version_message(row: DocumentVersionRow, *, markdown: bool = False) -> crawl_job_pb2.DocumentVersion:
    msg = crawl_job_pb2.DocumentVersion(
        version=row.version, content_hash=row.content_hash, title=row.title or "",
        markdown=row.markdown if markdown else "",
    )  # fmt: skip
    set_timestamp(msg.fetched_at, row.fetched_at)
    return msg
