"""`quaero crawl`, `quaero execute` and `quaero docs search`, run as processes against a real stack
that crawls a local site: live progress, the document count, post-jobs, the `cli` trigger."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.integration.cli.conftest import Result, start_cli
from tests.support.runs import define
from tests.support.services import Stack
from tests.support.site import LocalSite


def plain(text: str) -> str:
    """Terminal output without its escape sequences (styles, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: bytearray) -> None:
    """Read `stream` until `pattern` appears in what was read (a hang is bounded by the caller)."""
    while not re.search(pattern, seen.decode(errors="replace")):
        chunk = await stream.read(4096)
        assert chunk, f"stream ended before {pattern!r}: {seen.decode(errors='replace')[-2000:]}"
        seen.extend(chunk)


async def test_crawl_shows_live_progress_and_ends_with_the_document_count(stack: Stack, site: LocalSite) -> None:
    site.close()
    process = await start_cli(
        "crawl", site.url("/"), "--depth", "1", url=stack.base_url, TTY_COMPATIBLE="1", TTY_INTERACTIVE="1"
    )
    assert process.stderr is not None
    seen = bytearray()
    # The bar is on screen while the crawl waits for the site…
    await asyncio.wait_for(read_until(process.stderr, r"0/1 urls running", seen), 60)
    site.open()
    out, err = await asyncio.wait_for(process.communicate(), 60)
    err_text = plain(seen.decode() + err.decode())

    # …and moves to 100% once the site answers.
    assert process.returncode == 0, err_text
    assert re.search(r"100\.0% 4/4 urls, 1 skipped completed", err_text)
    assert f"✓ crawl-127.0.0.1-{site.port} completed" in err_text
    assert re.fullmatch(
        r"Completed: 4 documents \(4 new, 0 changed, 0 unchanged, 0 removed\) from 1 crawl job in \d+(\.\d)?s\n",
        out.decode(),
    )
    definition = (await stack.http.get(f"/api/job-definitions/crawl-127.0.0.1-{site.port}")).json()
    assert definition["steps"][0]["config"] == {"start_urls": [site.url("/")], "max_depth": 1}
    (execution,) = (await stack.http.get("/api/executions")).json()["executions"]
    assert execution["trigger"] == "cli"


async def test_crawl_again_updates_the_definition(stack: Stack, site: LocalSite, quaero: Any) -> None:
    first = await quaero("crawl", site.url("/"), "--depth", "0", "--no-watch")
    second = await quaero("crawl", site.url("/"), "--max-pages", "2", "--exclude", "herons", "--json")

    assert first.code == 0 and first.out.startswith("Started execution")
    assert second.code == 0, second.err
    result = json.loads(second.out)
    assert result["execution"]["status"] == "completed"
    definition = (await stack.http.get(f"/api/job-definitions/crawl-127.0.0.1-{site.port}")).json()
    assert definition["steps"][0]["config"] == {
        "start_urls": [site.url("/")],
        "max_pages": 2,
        "exclude_patterns": ["herons"],
    }
    assert sum(job["result_count"] for job in result["jobs"]) == 2


async def test_docs_search_finds_a_crawled_page(site: LocalSite, quaero: Any) -> None:
    crawled = await quaero("crawl", site.url("/"))

    found = await quaero("docs", "search", "pelicans")
    nothing = await quaero("docs", "search", "albatross")

    assert crawled.code == 0, crawled.err
    assert found.code == 0
    lines = found.out.splitlines()
    assert lines[0] == "Pelicans" and lines[1].startswith(site.url("/pelicans.html"))
    assert "pelicans dive for fish" in found.out.lower()
    assert nothing.code == 0 and nothing.out == "" and "no documents match" in nothing.err


async def test_execute_watch_follows_the_post_jobs_it_starts(stack: Stack, site: LocalSite, quaero: Any) -> None:
    await define(stack, {"id": "tidy", "steps": [{"name": "reindex", "action": "reindex"}]})
    await define(
        stack,
        {
            "id": "birds",
            "steps": [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], "max_depth": 1}}],
            "post_jobs": ["tidy", "ghost"],
        },
    )

    result = await quaero("execute", "birds", "--watch")

    assert result.code == 0, result.err
    assert "✓ birds completed" in result.err
    assert "↳ post-job tidy started" in result.err
    assert "↳ post-job ghost skipped (not_found: job definition 'ghost' not found)" in result.err
    assert re.search(r"^\s+✓ tidy completed", result.err, re.MULTILINE)  # watched too, indented under its parent
    assert result.out.startswith("Completed: 4 documents (4 new, 0 changed, 0 unchanged, 0 removed) from 1 crawl job")
    parent, child = sorted(
        (await stack.http.get("/api/executions")).json()["executions"], key=lambda e: e["created_at"]
    )
    assert parent["trigger"] == "cli" and child["trigger"] == "post_job"

    shown = await quaero("executions", "show", child["id"])
    as_json = json.loads((await quaero("execute", "birds", "--watch", "--json")).out)

    assert shown.code == 0
    assert re.search(r"lineage\s+birds → tidy", shown.out)
    assert re.search(rf"parent\s+{parent['id']}", shown.out)
    assert as_json["execution"]["status"] == "completed" and len(as_json["jobs"]) == 1
    (tidy,) = as_json["post_job_executions"]
    assert tidy["execution"]["job_definition_id"] == "tidy" and tidy["execution"]["status"] == "completed"


async def test_execute_without_watch_returns_at_once(stack: Stack, site: LocalSite, quaero: Any) -> None:
    await define(stack, {"id": "r", "steps": [{"name": "reindex", "action": "reindex"}]})

    result = await quaero("execute", "r", "--json")

    assert result.code == 0
    started = json.loads(result.out)
    assert started["job_definition_id"] == "r" and started["message"] == "Job execution started"
    execution = (await stack.http.get(f"/api/executions/{started['execution_id']}")).json()
    assert execution["trigger"] == "cli"


async def test_a_failed_execution_is_one_error_line_and_exit_1(stack: Stack, site: LocalSite, quaero: Any) -> None:
    await define(
        stack,
        {"id": "broken", "steps": [{"name": "c", "action": "crawl", "config": {"start_urls": [site.url("/gone")]}}]},
    )

    result: Result = await quaero("execute", "broken", "--watch")

    assert result.code == 1
    assert result.err_lines[-1].startswith("quaero: execution ")
    assert " failed: " in result.err_lines[-1]
    assert "Traceback" not in result.err
