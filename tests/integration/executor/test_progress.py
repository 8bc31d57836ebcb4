"""step_progress events stop with the execution: a run cancelled elsewhere gets no late ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.db import Database
from services.executor.ledger import Ledger
from tests.support.runs import define, execute, jobs, wait_until
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite


@pytest.fixture
async def stack(pg_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Leases long enough that lease renewal never notices a cancel within the test: only the
    progress write itself can."""
    async with running_stack(common_settings(pg_url, tmp_path), execution_lease_seconds=600) as s:
        yield s


async def test_no_progress_event_after_a_cancel_made_elsewhere(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.executor.runner.PROGRESS_INTERVAL", 0.0)  # record every report
    site = LocalSite()
    site.add("/", "Home", ["/a.html", "/b.html"])
    site.add("/a.html", "A")
    site.add("/b.html", "B")
    site.close()
    db = Database(stack.database_url, "executor")
    ledger = Ledger(db)
    try:
        async with site.serve():
            try:
                steps = [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url()], "concurrency": 1}}]
                await define(stack, {"id": "watched", "steps": steps})
                execution_id = (await execute(stack, "watched"))["execution_id"]
                await wait_until(lambda: _has(ledger, execution_id, "step_progress"))
                # Cancelled by another replica: this one is not told, and its lease is still valid.
                await ledger.cancel(execution_id)
                # The home page (alone at the gate, concurrency 1) is let through and fetched: the
                # crawler reports progress. The pages it links to stay held.
                site.held = lambda path: path != "/"
                site.open()
                site.close()
                [job] = await jobs(stack, execution_id=execution_id)
                # The driver's progress write finds the run cancelled: it stops and cancels the crawl.
                await wait_until(lambda: _job_status(stack, job["id"], "cancelled"))
                history = [e.type for e in await ledger.events_after(execution_id, 0)]
                assert history[-1] == "cancelled", history
            finally:
                site.open()
    finally:
        await db.close()


async def _has(ledger: Ledger, execution_id: str, event_type: str) -> bool:
    return event_type in [e.type for e in await ledger.events_after(execution_id, 0)]


async def _job_status(stack: Stack, job_id: str, status: str) -> bool:
    return (await stack.http.get(f"/api/jobs/{job_id}")).json()["status"] == status  # type: ignore[no-any-return]
