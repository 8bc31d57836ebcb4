"""Change-driven post-jobs and signed webhooks, end to end through the REST API, on embedded
SQLite and on PostgreSQL: a real crawler, a local site that changes between executions, and a
local receiver that verifies every delivery with `standardwebhooks`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Receiver, new_secret
from tests.support.runs import define, events, execute, wait_for, wait_until
from tests.support.services import Stack, running_stack
from tests.support.site import LocalSite, small_site

EVENTS = ["execution.completed", "execution.failed", "documents.changed"]


@pytest.fixture
async def stack(backend: dict[str, Any], tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        backend, execution_lease_seconds=3.0, webhook_retry_initial_seconds=0.05, webhook_retry_max_seconds=0.2
    ) as s:
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with small_site(3).serve() as s:
        yield s


def crawl(url: str) -> list[dict[str, Any]]:
    return [{"name": "crawl", "action": "crawl", "config": {"start_urls": [url], "max_depth": 1}}]


async def run(stack: Stack, definition_id: str) -> dict[str, Any]:
    return await wait_for(stack, (await execute(stack, definition_id))["execution_id"])


async def test_post_jobs_when_changed_runs_only_after_a_change(stack: Stack, site: LocalSite) -> None:
    summary = [{"name": "summary", "action": "corpus_summary", "config": {"documents": "parent_changes"}}]
    await define(stack, {"id": "summarise", "type": "custom", "steps": summary})
    await define(
        stack, {"id": "docs", "steps": crawl(site.url()), "post_jobs": ["summarise"], "post_jobs_when": "changed"}
    )

    first = await run(stack, "docs")
    assert first["changes"] == {"new": 4, "changed": 0, "unchanged": 0, "removed": 0}
    assert [t["job_definition_id"] for t in first["post_jobs"]["triggered"]] == ["summarise"]

    unchanged = await run(stack, "docs")
    assert unchanged["status"] == "completed"
    assert unchanged["changes"]["unchanged"] == 4 and unchanged["changes"]["new"] == 0
    assert unchanged["post_jobs"]["triggered"] == []
    assert [(s["job_definition_id"], s["reason"]) for s in unchanged["post_jobs"]["skipped"]] == [
        ("summarise", "no_changes")
    ]

    site.add("/page-1.html", "Page 1", ["/"], body="Rewritten words about page one.")
    changed = await run(stack, "docs")
    assert changed["changes"]["changed"] == 1
    [child_ref] = changed["post_jobs"]["triggered"]
    child = await wait_for(stack, child_ref["execution_id"])
    assert child["status"] == "completed"
    assert child["parent_changes"] == changed["changes"]
    # documents: parent_changes: the summary covers the one document the parent changed.
    [result] = [p["result"] for t, p in await events(stack, child["id"]) if t == "step_completed"]
    assert result["documents"] == 1


async def test_reindex_of_parent_changes_reindexes_only_the_documents_the_parent_changed(
    stack: Stack, site: LocalSite
) -> None:
    reindex = [{"name": "reindex", "action": "reindex", "config": {"documents": "parent_changes"}}]
    await define(stack, {"id": "reindexing", "type": "custom", "steps": reindex})
    await define(stack, {"id": "docs", "steps": crawl(site.url()), "post_jobs": ["reindexing"]})

    async def reindexed(parent: dict[str, Any]) -> dict[str, Any]:
        [child_ref] = parent["post_jobs"]["triggered"]
        child = await wait_for(stack, child_ref["execution_id"])
        assert child["status"] == "completed"
        [result] = [p["result"] for t, p in await events(stack, child["id"]) if t == "step_completed"]
        return dict(result)

    first = await run(stack, "docs")
    assert first["changes"]["new"] == 4
    assert await reindexed(first) == {"documents": 4, "dry_run": False, "scope": "parent_changes"}

    unchanged = await run(stack, "docs")
    assert unchanged["changes"]["unchanged"] == 4
    assert (await reindexed(unchanged))["documents"] == 0

    site.add("/page-2.html", "Page 2", ["/"], body="Page two, rewritten since the first execution.")
    changed = await run(stack, "docs")
    assert (changed["changes"]["changed"], changed["changes"]["unchanged"]) == (1, 3)
    # Only the changed page's document, not the source's four.
    assert await reindexed(changed) == {"documents": 1, "dry_run": False, "scope": "parent_changes"}


async def test_post_jobs_when_is_validated_on_save(stack: Stack) -> None:
    response = await stack.http.post(
        "/api/job-definitions",
        json={"id": "bad", "name": "Bad", "type": "custom", "steps": [{"name": "r", "action": "reindex"}],
              "post_jobs_when": "sometimes"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "post_jobs_when" in response.text


async def test_every_event_is_delivered_signed_despite_500s(stack: Stack, site: LocalSite) -> None:
    async with Receiver(fail_first=2).serve() as receiver, LocalSite(delay=5.0).serve() as slow:
        slow.add("/", "Slow")
        hooks = [{"url": receiver.url(), "events": EVENTS, "secret": receiver.secret}]
        await define(stack, {"id": "docs", "steps": crawl(site.url()), "webhooks": hooks})
        await define(stack, {"id": "slow", "steps": crawl(slow.url()), "timeout": "1s", "webhooks": hooks})

        ok = await run(stack, "docs")
        failed = await run(stack, "slow")
        assert (ok["status"], failed["status"]) == ("completed", "failed")

        async def all_delivered() -> bool:
            return set(receiver.delivered()) == set(EVENTS)

        await wait_until(all_delivered)
        delivered = receiver.delivered()
        assert delivered["execution.completed"]["data"]["execution_id"] == ok["id"]
        assert delivered["documents.changed"]["data"]["changes"]["new"] == 4
        assert delivered["execution.failed"]["data"]["error"]["code"] == "timeout"
        assert all(r.verified for r in receiver.received)
        # Three attempts each (500, 500, 204), every one under the same webhook-id.
        assert set(receiver.attempts().values()) == {3}

        async def log_settled() -> list[dict[str, Any]] | None:
            body = (await stack.http.get(f"/api/executions/{ok['id']}/webhooks")).json()
            return body["deliveries"] if all(d["status"] == "delivered" for d in body["deliveries"]) else None

        deliveries = await wait_until(log_settled)
        assert sorted(d["event"] for d in deliveries) == ["documents.changed", "execution.completed"]
        for d in deliveries:
            assert (d["attempts"], d["last_status_code"], d["url"]) == (3, 204, receiver.url())
            assert receiver.attempts()[d["id"]] == 3


async def test_a_webhook_gets_only_its_events(stack: Stack, site: LocalSite) -> None:
    async with Receiver().serve() as receiver:
        hooks = [{"url": receiver.url(), "events": ["documents.changed"], "secret": receiver.secret}]
        await define(stack, {"id": "docs", "steps": crawl(site.url()), "webhooks": hooks})
        first = await run(stack, "docs")
        second = await run(stack, "docs")  # nothing changed: no documents.changed

        async def first_delivered() -> bool:
            return "documents.changed" in receiver.delivered()

        await wait_until(first_delivered)
        log = (await stack.http.get(f"/api/executions/{second['id']}/webhooks")).json()
        assert log["deliveries"] == [] and log["total_count"] == 0
        assert [r.payload["data"]["execution_id"] for r in receiver.received if r.payload] == [first["id"]]


async def test_webhook_secret_is_write_only_and_kept_on_update(stack: Stack) -> None:
    secret = new_secret()
    body = {"id": "hooked", "name": "Hooked", "type": "custom", "steps": [{"name": "r", "action": "reindex"}],
            "webhooks": [{"url": "https://hooks.example.com/q", "secret": secret}]}  # fmt: skip
    created = await define(stack, body)
    assert created["webhooks"] == [
        {"url": "https://hooks.example.com/q", "events": [], "secret": "", "has_secret": True}
    ]
    got = (await stack.http.get("/api/job-definitions/hooked")).text
    assert secret not in got and secret.removeprefix("whsec_") not in got

    # Saved back as read (no secret): the stored one stays.
    again = {**body, "name": "Renamed", "webhooks": [{"url": "https://hooks.example.com/q"}]}
    response = await stack.http.put("/api/job-definitions/hooked", json=again)
    assert response.status_code == 200, response.text
    assert response.json()["webhooks"][0]["has_secret"] is True
    # A new URL without a secret has none to keep.
    moved = {**body, "webhooks": [{"url": "https://other.example.com/q"}]}
    response = await stack.http.put("/api/job-definitions/hooked", json=moved)
    assert response.status_code == 400
    assert "webhooks[0].secret" in response.text


@pytest.mark.parametrize(
    ("hook", "field"),
    [
        ({"url": "ftp://hooks.example.com/"}, "webhooks[0].url"),
        ({"url": "http://169.254.169.254/latest"}, "webhooks[0].url"),
        ({"url": "https://hooks.example.com/", "events": ["execution.started"]}, "webhooks[0].events[0]"),
        ({"url": "https://hooks.example.com/", "secret": "whsec_c2hvcnQ="}, "webhooks[0].secret"),
        ({"url": "https://hooks.example.com/", "secret": "not base64!"}, "webhooks[0].secret"),
    ],
    ids=["scheme", "metadata-address", "unknown-event", "short-secret", "not-base64"],
)
async def test_bad_webhooks_are_refused_naming_the_field(stack: Stack, hook: dict[str, Any], field: str) -> None:
    hook = {"secret": new_secret(), **hook}
    body = {"id": "bad", "name": "Bad", "type": "custom", "steps": [{"name": "r", "action": "reindex"}],
            "webhooks": [hook]}  # fmt: skip
    response = await stack.http.post("/api/job-definitions", json=body)
    assert response.status_code == 400, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert field in fields
    if "secret" in hook:
        assert hook["secret"] not in response.text
    assert (await stack.http.get("/api/job-definitions/bad")).status_code == 404


async def test_deliveries_of_an_unknown_execution_are_404(stack: Stack) -> None:
    response = await stack.http.get("/api/executions/0b8f2c64-5d0e-4c1f-9a3e-1f2d3c4b5a69/webhooks")
    assert response.status_code == 404
