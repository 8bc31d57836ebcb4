"""The dispatch pump and publisher heartbeats against real databases: which leases it publishes again."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from libs.amqp import InProcessQueue
from libs.db import Database, utcnow
from services.crawler.frontier import url_key
from services.crawler.publishers import Heartbeat
from services.crawler.pump import Pump
from services.crawler.queue import queue_spec
from services.crawler.store import (
    DOCUMENTS,
    PUBLISHERS,
    URLS,
    CrawlStore,
    Stored,
    give_back_every_lease,
    heartbeat,
)
from tests.support.crawler import crawler_database, crawler_settings, job_spec

SEEDS = ["http://docs.test/a", "http://docs.test/b"]


async def leases(db: Database) -> dict[str, tuple[bool, str | None]]:
    """Each URL: whether it is leased, and by whom."""
    async with db.read() as session:
        rows = await session.execute(select(URLS.c.url, URLS.c.published_at, URLS.c.leased_by))
        return {r.url: (r.published_at is not None, r.leased_by) for r in rows}


async def publishers(db: Database) -> set[str]:
    async with db.read() as session:
        return set((await session.execute(select(PUBLISHERS.c.id))).scalars())


async def lease_by(db: Database, publisher: str) -> None:
    """Both seeds leased (and never sent) by `publisher`; the second one then by `alive`."""
    await CrawlStore(db, publisher=publisher).create_jobs([job_spec(SEEDS, config={"concurrency": 2})])
    async with db.session() as session:
        await session.execute(update(URLS).where(URLS.c.url == SEEDS[1]).values(leased_by="alive"))


async def test_the_leases_of_a_silent_publisher_are_published_again_at_once(backend: dict[str, Any]) -> None:
    settings = crawler_settings(backend, visibility_timeout=600.0, publisher_timeout=5.0)
    async with crawler_database(backend) as db:
        await lease_by(db, "killed")
        await heartbeat(db, "killed", utcnow() - timedelta(seconds=6))
        await heartbeat(db, "alive", utcnow())
        queue = InProcessQueue(queue_spec(settings))
        pump = Pump(db, queue, settings, publisher="pump")

        published = await pump.pump_once()

        assert published == 1 and await queue.depth() == 1
        assert await leases(db) == {SEEDS[0]: (True, "pump"), SEEDS[1]: (True, "alive")}
        # Nothing of the silent one's is left leased: its row goes; the live one's stays.
        assert await publishers(db) == {"alive"}
        assert await pump.pump_once() == 0


async def test_the_leases_of_a_publisher_that_beats_are_left_to_it(backend: dict[str, Any]) -> None:
    settings = crawler_settings(backend, visibility_timeout=600.0, publisher_timeout=5.0)
    async with crawler_database(backend) as db:
        await lease_by(db, "slow")
        await heartbeat(db, "slow", utcnow() - timedelta(seconds=4))
        queue = InProcessQueue(queue_spec(settings))

        published = await Pump(db, queue, settings, publisher="pump").pump_once()

        assert published == 0
        assert await leases(db) == {SEEDS[0]: (True, "slow"), SEEDS[1]: (True, "alive")}
        assert await publishers(db) == {"slow"}


async def test_a_heartbeat_registers_beats_again_after_its_row_was_removed_and_leaves_on_a_clean_stop(
    backend: dict[str, Any],
) -> None:
    async with crawler_database(backend) as db:
        beat = Heartbeat(db, timeout=0.25, role="worker")
        await beat.start()
        registered = await publishers(db)
        async with db.session() as session:  # as the pump does when it took the publisher for dead
            await session.execute(PUBLISHERS.delete())
        for _ in range(200):
            if await publishers(db):
                break
            await asyncio.sleep(0.05)
        back = await publishers(db)

        await beat.stop(all_published=True)

        assert registered == back == {beat.id}
        assert await publishers(db) == set()


async def test_a_start_with_the_queue_in_memory_gives_back_every_lease(backend: dict[str, Any]) -> None:
    settings = crawler_settings(backend, visibility_timeout=600.0)
    async with crawler_database(backend) as db:
        await lease_by(db, "previous-process")
        await heartbeat(db, "previous-process", utcnow())

        given = await give_back_every_lease(db)
        queue = InProcessQueue(queue_spec(settings))
        published = await Pump(db, queue, settings).pump_once()

        assert given == 2 and published == 2 and await queue.depth() == 2
        assert await leases(db) == {SEEDS[0]: (True, None), SEEDS[1]: (True, None)}
        assert await publishers(db) == set()


async def test_the_tasks_a_recrawl_leases_and_the_pump_publishes_again_carry_their_documents(
    backend: dict[str, Any],
) -> None:
    """Leased by the job's creation, and leased again by the pump from a silent publisher: each
    task of a recrawl carries its page's stored document (validators, links, body hash), or says
    the page has none, so no worker looks either up."""
    settings = crawler_settings(backend, visibility_timeout=600.0, publisher_timeout=5.0)
    async with crawler_database(backend) as db:
        now = utcnow()
        async with db.session() as session:
            await session.execute(
                DOCUMENTS.insert().values(
                    id="doc-a", source_id="s", url_key=url_key(SEEDS[0]), url=SEEDS[0], host="docs.test", title="A",
                    markdown="a", metadata={"body_hash": "f" * 64}, content_hash="c" * 64, word_count=1, etag='"e"',
                    links=[SEEDS[1]], created_at=now, updated_at=now,
                )
            )  # fmt: skip
        created = await CrawlStore(db, publisher="killed").create_jobs(
            [job_spec(SEEDS, source_id="s", config={"concurrency": 2})]
        )
        await heartbeat(db, "killed", utcnow() - timedelta(seconds=6))
        pump = Pump(db, InProcessQueue(queue_spec(settings)), settings, publisher="pump")
        republished = await pump._pump_job(created.jobs[0].id, ["killed"])

    document = Stored("doc-a", "c" * 64, '"e"', None, True, [SEEDS[1]], "f" * 64)
    expected = {SEEDS[0]: (True, document), SEEDS[1]: (True, None)}
    assert {t.url: (t.stored_known, t.stored) for t in created.tasks} == expected
    assert {t.url: (t.stored_known, t.stored) for t in republished} == expected
