"""CrawlStore against real databases: creating jobs, and cancelling an execution's jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text

from libs.db import Database, page
from services.crawler.store import CrawlStore, JobSpec, ListFilter
from tests.support.crawler import crawler_database, job_spec
from tests.support.services import common_settings

EVERY = page(0, 0, "", "", allowed=("created_at",))


async def test_a_job_keeps_a_request_id_of_any_length(backend: dict[str, Any]) -> None:
    request_id = "r" * 300
    async with crawler_database(backend) as db:
        store = CrawlStore(db)

        created = await store.create_jobs([job_spec(["http://docs.test/"], request_id=request_id)])
        (job,), tasks = created.jobs, created.tasks

        assert (await store.get_job(job.id)).request_id == request_id
        assert [t.request_id for t in tasks] == [request_id]


def execution_spec(execution_id: str, source_id: str = "docs") -> JobSpec:
    return job_spec(
        ["http://docs.test/"],
        source_id=source_id,
        metadata={"execution_id": execution_id},
        step_key=f"{execution_id}/0/1/{source_id}",
    )


async def test_jobs_of_an_execution_already_cancelled_are_not_created(backend: dict[str, Any]) -> None:
    async with crawler_database(backend) as db:
        store = CrawlStore(db)

        cancelled = await store.cancel_execution("e1", "timeout")
        created = await store.create_jobs([execution_spec("e1")])
        other = await store.create_jobs([execution_spec("e2")])
        _, total = await store.list_jobs(ListFilter(execution_id="e1"), EVERY)

    assert cancelled == []
    assert (created.jobs, created.tasks, created.cancelled) == ([], [], "timeout")
    assert total == 0
    assert len(other.jobs) == 1 and other.cancelled is None


async def test_a_replay_after_the_cancel_finds_the_cancelled_job_and_creates_none(backend: dict[str, Any]) -> None:
    async with crawler_database(backend) as db:
        store = CrawlStore(db)
        (job,) = (await store.create_jobs([execution_spec("e1")])).jobs

        cancelled = await store.cancel_execution("e1", "cancelled")
        same = await store.create_jobs([execution_spec("e1")])
        replay = await store.create_jobs([execution_spec("e1"), execution_spec("e1", source_id="more")])
        _, total = await store.list_jobs(ListFilter(execution_id="e1"), EVERY)

    assert cancelled == [job.id]
    assert [(j.id, j.status) for j in replay.jobs] == [(job.id, "cancelled")]
    assert replay.cancelled == "cancelled" and replay.tasks == []
    assert [j.id for j in same.jobs] == [job.id] and same.cancelled == "cancelled"
    assert total == 1


async def waiting_advisory_locks(db: Database) -> int:
    async with db.read() as session:
        return int(
            (
                await session.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                )
            ).scalar_one()
        )


async def test_a_cancel_that_lands_while_jobs_are_created_cancels_them(pg_url: str, tmp_path: Path) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_the_creation() -> None:
        entered.set()
        await release.wait()

    async with crawler_database(common_settings(pg_url, tmp_path)) as db:
        creating = asyncio.create_task(
            CrawlStore(db, before_commit=hold_the_creation).create_jobs([execution_spec("e1")])
        )
        await asyncio.wait_for(entered.wait(), 30)
        cancelling = asyncio.create_task(CrawlStore(db).cancel_execution("e1", "cancelled"))
        # Until the cancel either finished or waits for the creation's transaction.
        async with asyncio.timeout(30):
            while not cancelling.done() and not await waiting_advisory_locks(db):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        release.set()
        created, cancelled = await creating, await cancelling
        (job,) = created.jobs
        final = await CrawlStore(db).get_job(job.id)
        urls, _ = await CrawlStore(db).list_urls(job.id, None, "", EVERY)

    assert cancelled == [job.id]
    assert final.status == "cancelled" and final.pending_urls == 0
    assert [u.state for u in urls] == ["cancelled"]
