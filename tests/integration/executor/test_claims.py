"""Two executor replicas on one PostgreSQL claim crawl cancels and webhook deliveries at the same
moment: each due row goes to exactly one of them (FOR UPDATE SKIP LOCKED), and none is left."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from libs.db import Database, utcnow
from services.executor.cancels import CANCELS, CancelPolicy, CrawlCancels
from services.executor.ledger import ExecutionRow
from services.executor.outbox import DELIVERIES, PENDING, Outbox
from services.executor.settings import ExecutorSettings
from tests.support.services import common_settings

ROWS = 300
BATCH = 7  # small, so each replica needs many rounds and the rounds interleave


@pytest.fixture
async def replicas(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two replicas' own connection pools on one migrated executor database."""
    url = ExecutorSettings(**common_settings(pg_url, tmp_path / "data")).database_url_for("executor")
    dbs = (Database(url, "executor"), Database(url, "executor"))
    for db in dbs:
        await db.start()
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def _executions(db: Database, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    async with db.session() as session:
        for execution_id in ids:
            session.add(
                ExecutionRow(
                    id=execution_id, job_definition_id="docs", job_name="Docs", definition={"steps": []},
                    status="cancelled", trigger="api", lineage=[], steps=[], post_jobs_state="none", post_jobs={},
                    created_at=utcnow(), updated_at=utcnow(),
                )
            )  # fmt: skip
    return ids


async def _drain(claim: Any) -> list[str]:
    """Claim until a round comes back empty twice (the other replica may hold rows a moment)."""
    taken: list[str] = []
    empty = 0
    while empty < 2:
        batch = await claim()
        taken.extend(batch)
        empty = empty + 1 if not batch else 0
        await asyncio.sleep(0)
    return taken


def _assert_each_once(taken: tuple[list[str], list[str]], expected: list[str]) -> None:
    first, second = taken
    assert not set(first) & set(second), "a row was claimed by both replicas"
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert sorted(first + second) == sorted(expected)
    assert first and second, "one replica took everything: the claims did not overlap in time"


async def test_two_replicas_claim_each_crawl_cancel_once(replicas: tuple[Database, Database]) -> None:
    ids = await _executions(replicas[0], ROWS)
    due = utcnow() - timedelta(seconds=1)
    async with replicas[0].connection() as conn:
        await conn.execute(
            insert(CANCELS),
            [
                {"execution_id": i, "reason": "cancelled", "attempts": 0, "next_attempt_at": due,
                 "last_error": "", "created_at": due}
                for i in ids
            ],
        )  # fmt: skip
    policy = CancelPolicy(batch=BATCH, claim_seconds=600)
    cancels = [CrawlCancels(db, crawler=None, policy=policy) for db in replicas]

    async def claim(c: CrawlCancels) -> list[str]:
        return [r.execution_id for r in await c._claim()]

    taken = await asyncio.gather(*(_drain(lambda c=c: claim(c)) for c in cancels))
    _assert_each_once((taken[0], taken[1]), ids)


async def test_two_replicas_claim_each_webhook_delivery_once(replicas: tuple[Database, Database]) -> None:
    [execution_id] = await _executions(replicas[0], 1)
    due = utcnow() - timedelta(seconds=1)
    ids = [f"msg_{uuid.uuid4().hex}" for _ in range(ROWS)]
    async with replicas[0].connection() as conn:
        await conn.execute(
            insert(DELIVERIES),
            [
                {"id": i, "execution_id": execution_id, "job_definition_id": "docs", "url": "http://127.0.0.1:9/",
                 "event": "execution.completed", "body": json.dumps({"type": "execution.completed"}), "secret": "",
                 "status": PENDING, "attempts": 0, "last_status_code": None, "last_error": "",
                 "next_attempt_at": due, "created_at": due, "delivered_at": None}
                for i in ids
            ],
        )  # fmt: skip
    outboxes = [Outbox(db) for db in replicas]

    async def claim(o: Outbox) -> list[str]:
        claimed = await o.claim(BATCH, claim_seconds=600)
        assert all(d.attempts == 1 for d in claimed)  # one attempt counted per claim, never two
        return [d.id for d in claimed]

    taken = await asyncio.gather(*(_drain(lambda o=o: claim(o)) for o in outboxes))
    _assert_each_once((taken[0], taken[1]), ids)
