"""URL tasks on the queue: UrlTask protobuf bodies, the request id in a header as well."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from libs.amqp import InProcessQueue, OutgoingMessage, QueueSpec, RabbitQueue, TaskQueue
from libs.db import Database
from libs.logs import REQUEST_ID_HEADER
from quaero.v1 import url_task_pb2
from services.crawler.settings import CrawlerSettings
from services.crawler.store import Stored, Task, give_back_leases

log = logging.getLogger(__name__)

# Seconds a publish may wait for the broker's confirms before its tasks count as not published.
PUBLISH_TIMEOUT = 10.0


def encode(task: Task) -> OutgoingMessage:
    message = url_task_pb2.UrlTask(
        job_id=task.job_id, url_id=task.url_id, url=task.url, depth=task.depth, request_id=task.request_id
    )
    if task.attempts is not None:
        message.attempts = task.attempts
        message.redirect_hops = task.redirect_hops
        message.document_id = task.document_id or ""
    if task.stored_known:
        message.stored_known = True
        if (stored := task.stored) is not None:
            message.stored.document_id = stored.id
            message.stored.content_hash = stored.content_hash
            if stored.etag is not None:
                message.stored.etag = stored.etag
            if stored.last_modified is not None:
                message.stored.last_modified = stored.last_modified
            message.stored.has_links = stored.has_links
            if stored.links is not None:
                message.stored.links_carried = True
                message.stored.links.extend(stored.links)
            message.stored.body_hash = stored.body_hash or ""
    body = message.SerializeToString()
    return OutgoingMessage(body, {REQUEST_ID_HEADER: task.request_id} if task.request_id else {})


def carried(task: url_task_pb2.UrlTask) -> tuple[bool, Stored | None]:
    """Whether the task carries its page's stored document (a recrawl's task from a publisher
    that read it), and the document (None: the page has none)."""
    if not task.stored_known:
        return False, None
    if not task.HasField("stored"):
        return True, None
    s = task.stored
    return True, Stored(
        s.document_id,
        s.content_hash,
        s.etag if s.HasField("etag") else None,
        s.last_modified if s.HasField("last_modified") else None,
        s.has_links,
        list(s.links) if s.links_carried else None,
        s.body_hash or None,
    )


def decode(body: bytes) -> url_task_pb2.UrlTask:
    task = url_task_pb2.UrlTask()
    task.ParseFromString(body)
    if not task.job_id or not task.url_id:
        raise ValueError("a UrlTask needs job_id and url_id")
    return task


async def publish(
    queue: TaskQueue, tasks: Sequence[Task], *, give_back: Database | None = None, timeout: float = PUBLISH_TIMEOUT
) -> bool:
    """Publish with pipelined confirms; False when the broker is unreachable, refuses a message
    or does not confirm them all within `timeout` seconds.

    With `give_back` (the frontier's database) the leases of a failed publish are given back at
    once (state queued, lease cleared), so the pump publishes them again as soon as the broker
    answers; without it they keep their lease until the visibility timeout. Either way nothing is
    lost, and a message the broker did get after all is only a duplicate, which workers handle."""
    if not tasks:
        return True
    try:
        await asyncio.wait_for(queue.publish([encode(t) for t in tasks]), timeout)
    except Exception as exc:
        if give_back is None:
            log.warning("publishing %d task(s) failed (%s); the pump will republish them", len(tasks), exc)
            return False
        log.warning("publishing %d task(s) failed (%s); their leases are given back", len(tasks), exc)
        try:
            await give_back_leases(give_back, [t.url_id for t in tasks])
        except Exception as db_exc:
            log.warning("giving back %d lease(s) failed (%s); they wait for the visibility timeout", len(tasks), db_exc)
        return False
    return True


def queue_spec(settings: CrawlerSettings) -> QueueSpec:
    return QueueSpec(name=settings.queue_name, delivery_limit=settings.delivery_limit)


async def open_queue(settings: CrawlerSettings, *, connection_name: str) -> TaskQueue:
    """RabbitMQ when QUAERO_AMQP_URL is set, else the in-process queue (embedded mode)."""
    spec = queue_spec(settings)
    if settings.amqp_url:
        return await RabbitQueue.connect(settings.amqp_url, spec, connection_name=connection_name)
    return InProcessQueue(spec)
