"""The dispatch pump and the dead-letter consumer, run by the crawler server.

Workers lease new tasks as they settle, so the pump only catches what they cannot: URLs due for
a retry, leases whose publisher went silent (a process killed between commit and publish:
publishers.py), leases that expired (anything else lost: the relay), and jobs left with nothing
pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import or_, select, update

from libs.amqp import Consumer, Delivery, TaskQueue
from libs.db import Database, utcnow
from services.crawler import queue as tasks_queue
from services.crawler.settings import CrawlerSettings
from services.crawler.settle import FAILED, Outcome, Settler, job_context
from services.crawler.store import (
    JOBS,
    LEASED,
    QUEUED,
    RUNNING,
    URLS,
    Task,
    dispatch,
    finish_job,
    forget_silent_publishers,
    lease_cutoff,
    silent_publishers,
    with_stored,
)

log = logging.getLogger(__name__)


class Pump:
    def __init__(
        self, db: Database, queue: TaskQueue, settings: CrawlerSettings, *, publisher: str | None = None
    ) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        # This process's publisher id: what the pump leases is leased by it.
        self.publisher = publisher

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.pump_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dispatch pump round failed (%s); trying again", exc, exc_info=log.isEnabledFor(10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.pump_interval)

    async def pump_once(self) -> int:
        """One round over every running job; returns how many tasks it published."""
        silence = lease_cutoff(utcnow(), self.settings.publisher_timeout)
        async with self.db.read() as session:
            jobs = (await session.execute(select(JOBS.c.id).where(JOBS.c.status == RUNNING))).scalars().all()
            silent = await silent_publishers(session, silence)
        published = 0
        for job_id in jobs:
            tasks = await self._pump_job(job_id, silent)
            if tasks:
                await tasks_queue.publish(self.queue, tasks, give_back=self.db)
                published += len(tasks)
        if silent:
            # Once every lease of theirs is republished (a job skipped this round keeps them).
            gone = await forget_silent_publishers(self.db, silent, silence)
            if gone:
                log.info("forgot %d silent publisher(s)", gone)
        return published

    async def _pump_job(self, job_id: str, silent: list[str]) -> list[Task]:
        now = utcnow()
        async with self.db.session() as session:
            # A job a worker is settling right now leases its own tasks: skip it this round.
            job = (
                await session.execute(
                    select(JOBS.c.status, JOBS.c.concurrency, JOBS.c.request_id, JOBS.c.pending_urls)
                    .where(JOBS.c.id == job_id)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if job is None or job.status != RUNNING:
                return []
            if job.pending_urls <= 0:
                await finish_job(self.db, session, job_id, now)
                return []
            expired = URLS.c.published_at < lease_cutoff(now, self.settings.visibility_timeout)
            lost = await session.execute(
                update(URLS)
                .where(
                    URLS.c.job_id == job_id,
                    URLS.c.state == QUEUED,
                    URLS.c.published_at.is_not(None),
                    or_(expired, URLS.c.leased_by.in_(silent)) if silent else expired,
                )
                .values(published_at=now, publications=URLS.c.publications + 1, leased_by=self.publisher)
                .returning(*LEASED, URLS.c.url_key)
            )
            rows = [dict(r._mapping) for r in lost]
            if rows:
                await with_stored(session, job_id, rows)  # a recrawl's tasks carry their documents
            tasks = [Task.leased(job_id, r, job.request_id) for r in rows]
            if tasks:
                log.info(
                    "republishing %d task(s) whose lease expired or whose publisher went silent",
                    len(tasks),
                    extra={"job_id": job_id},
                )
            tasks.extend(await dispatch(session, job_id, job.concurrency, job.request_id, now, self.publisher))
        return tasks


class DeadLetters:
    """Settles the URL of a task that kept failing as `failed` with reason `poison`."""

    def __init__(self, db: Database, queue: TaskQueue, settler: Settler) -> None:
        self.db = db
        self.queue = queue
        self.settler = settler
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._consumer = await self.queue.consume_dead_letters(self._handle)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None

    async def _handle(self, delivery: Delivery) -> None:
        try:
            task = tasks_queue.decode(delivery.body)
        except Exception:
            log.error("dropping an unreadable dead letter")
            await delivery.ack()
            return
        try:
            async with self.db.read() as session:
                row = (await session.execute(select(JOBS).where(JOBS.c.id == task.job_id))).one_or_none()
            if row is not None:
                outcome = Outcome(
                    task.url_id,
                    FAILED,
                    url=task.url,
                    reason="poison",
                    detail=f"dead-lettered after {delivery.delivery_count} deliveries",
                )
                settled = await self.settler.settle(job_context(row), [outcome], {})
                await tasks_queue.publish(self.queue, settled.tasks, give_back=self.db)
                log.warning("task dead-lettered: %s failed (poison)", task.url, extra={"job_id": task.job_id})
        except Exception:
            log.exception("settling a dead letter failed; it will be delivered again")
            await delivery.reject(requeue=True)
            return
        await delivery.ack()
