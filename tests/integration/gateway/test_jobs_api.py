"""The REST API over crawl jobs and documents, after a real crawl of a local site, on embedded
SQLite and on PostgreSQL: jobs, stats, logs, URLs, documents, search, events; then the
state-changing routes (cancel, rerun, delete) on jobs of their own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.gateway.routes.documents import Document, DocumentSummaryList
from services.gateway.routes.executions import Execution
from services.gateway.routes.jobs import CrawlJob, CrawlJobList, CrawlUrlList, JobLogList
from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="module")


def pelican_site() -> LocalSite:
    site = LocalSite()
    site.add(
        "/", "Birds index", ["/alpha.html", "/beta.html", "/missing.html", "http://offsite.invalid/", "/deep/1.html"]
    )
    site.add("/alpha.html", "Alpha", ["/"], body="Brown pelicans dive for fish along the coast")
    site.add("/beta.html", "Beta", ["/"], body="Grey herons wait in the shallows")
    site.add("/deep/1.html", "Deep one", ["/deep/2.html"])
    site.add("/deep/2.html", "Deep two")
    return site


@dataclass
class Crawled:
    backend: str
    stack: Stack
    site: LocalSite
    execution: dict[str, Any]
    job: dict[str, Any]

    @property
    def http(self) -> httpx.AsyncClient:
        return self.stack.http


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def crawled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Crawled]:
    """One crawl, read by every test of the module (they only read)."""
    data = tmp_path_factory.mktemp("data")
    url = request.getfixturevalue("postgres").create() if request.param == "postgres" else None
    try:
        async with pelican_site().serve() as site, running_stack(common_settings(url, Path(data))) as stack:
            await define(
                stack,
                {"id": "birds", "steps": [{"name": "crawl", "action": "crawl",
                                           "config": {"start_urls": [site.url("/")], "max_depth": 1}}]},
            )  # fmt: skip
            started = await execute(stack, "birds")
            execution = await wait_for(stack, started["execution_id"])
            assert execution["status"] == "completed", execution
            (job,) = (await stack.http.get("/api/jobs", params={"execution_id": execution["id"]})).json()["jobs"]
            yield Crawled(request.param, stack, site, execution, job)
    finally:
        if url:
            request.getfixturevalue("postgres").drop(url)


async def test_jobs_list_by_execution_and_get_match_the_schema(crawled: Crawled) -> None:
    listed = (await crawled.http.get("/api/jobs", params={"execution_id": crawled.execution["id"]})).json()
    got = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}")).json()

    CrawlJobList.model_validate(listed)
    CrawlJob.model_validate(got)
    assert listed["total_count"] == 1 and got == crawled.job
    assert got["status"] == "completed" and got["progress"]["percentage"] == 100
    assert got["metadata"]["job_definition_id"] == "birds"
    assert got["metadata"]["execution_id"] == crawled.execution["id"]
    assert got["result_count"] == 4  # index, alpha, beta, deep/1
    assert crawled.execution["steps"][0]["crawl_job_ids"] == [got["id"]]
    Execution.model_validate(crawled.execution)


async def test_job_filters_answer_only_matching_jobs(crawled: Crawled) -> None:
    by_definition = (await crawled.http.get("/api/jobs", params={"job_definition_id": "birds"})).json()
    running = (await crawled.http.get("/api/jobs", params={"status": "running"})).json()
    other = (await crawled.http.get("/api/jobs", params={"job_definition_id": "nobody"})).json()

    assert [j["id"] for j in by_definition["jobs"]] == [crawled.job["id"]]
    assert running["jobs"] == [] and running["total_count"] == 0
    assert other["total_count"] == 0


async def test_stats_count_jobs_by_status(crawled: Crawled) -> None:
    stats = (await crawled.http.get("/api/jobs/stats")).json()

    assert stats == {"total": 1, "pending": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}


@pytest.mark.parametrize(
    ("level", "allowed"),
    [("warn", {"warn", "error"}), ("warning", {"warn", "error"}), ("info", {"info", "warn", "error"}), ("debug", None)],
    ids=["warn", "warning-means-warn", "info", "debug-is-all"],
)
async def test_logs_level_means_that_level_and_above(crawled: Crawled, level: str, allowed: set[str] | None) -> None:
    every = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/logs", params={"limit": 500})).json()
    filtered = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/logs", params={"level": level})).json()

    JobLogList.model_validate(filtered)
    expected = [e for e in every["logs"] if allowed is None or e["level"] in allowed]
    assert filtered["logs"] == expected and filtered["total_count"] == len(expected)
    if level.startswith("warn"):
        assert any("missing.html" in e["message"] for e in filtered["logs"])  # the 404


async def test_logs_order_asc_is_the_reverse_of_the_default(crawled: Crawled) -> None:
    newest_first = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/logs", params={"limit": 500})).json()
    oldest_first = (
        await crawled.http.get(f"/api/jobs/{crawled.job['id']}/logs", params={"limit": 500, "order": "asc"})
    ).json()

    assert len(newest_first["logs"]) > 2
    assert oldest_first["logs"] == list(reversed(newest_first["logs"]))
    assert oldest_first["logs"][0]["message"].startswith("Crawl started")


async def test_urls_carry_states_and_skip_reasons(crawled: Crawled) -> None:
    urls = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/urls", params={"limit": 500})).json()
    skipped = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/urls", params={"state": "skipped"})).json()
    depth = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/urls", params={"reason": "depth"})).json()

    CrawlUrlList.model_validate(urls)
    by_url = {u["url"]: u for u in urls["urls"]}
    site = crawled.site
    assert by_url[site.url("/alpha.html")]["state"] == "done" and by_url[site.url("/alpha.html")]["document_id"]
    assert by_url[site.url("/missing.html")]["state"] == "failed"
    assert by_url[site.url("/missing.html")]["http_status"] == 404
    assert by_url["http://offsite.invalid/"]["reason"] == "offsite"
    assert {u["state"] for u in skipped["urls"]} == {"skipped"}
    assert [u["url"] for u in depth["urls"]] == [site.url("/deep/2.html")]


async def test_job_documents_are_listed_without_markdown(crawled: Crawled) -> None:
    body = (await crawled.http.get(f"/api/jobs/{crawled.job['id']}/documents")).json()

    DocumentSummaryList.model_validate(body)
    assert body["total_count"] == 4
    assert {d["title"] for d in body["documents"]} == {"Birds index", "Alpha", "Beta", "Deep one"}
    assert all("markdown" not in d and d["snippet"] is None for d in body["documents"])


async def test_document_carries_its_markdown(crawled: Crawled) -> None:
    listed = (await crawled.http.get("/api/documents", params={"job_id": crawled.job["id"]})).json()
    alpha = next(d for d in listed["documents"] if d["title"] == "Alpha")

    got = (await crawled.http.get(f"/api/documents/{alpha['id']}")).json()

    Document.model_validate(got)
    assert "Brown pelicans dive for fish" in got["markdown"]
    assert got["url"] == crawled.site.url("/alpha.html") and "snippet" not in got


async def test_search_finds_the_page_with_a_snippet(crawled: Crawled) -> None:
    found = (await crawled.http.get("/api/documents", params={"q": "pelicans"})).json()

    DocumentSummaryList.model_validate(found)
    assert [d["title"] for d in found["documents"]] == ["Alpha"] and found["total_count"] == 1
    assert "pelicans" in found["documents"][0]["snippet"].lower()
    assert "markdown" not in found["documents"][0]


async def test_search_within_a_job_or_source(crawled: Crawled) -> None:
    source_id = crawled.job["source_id"]

    in_job = await crawled.http.get("/api/documents", params={"q": "pelicans", "job_id": crawled.job["id"]})
    in_source = await crawled.http.get("/api/documents", params={"q": "pelicans", "source_id": source_id})
    elsewhere = await crawled.http.get("/api/documents", params={"q": "pelicans", "source_id": "elsewhere"})

    assert [d["title"] for d in in_job.json()["documents"]] == ["Alpha"]
    assert [d["title"] for d in in_source.json()["documents"]] == ["Alpha"]
    assert elsewhere.json()["total_count"] == 0


async def test_search_without_matches_is_an_empty_page(crawled: Crawled) -> None:
    found = (await crawled.http.get("/api/documents", params={"q": "albatross"})).json()

    assert found == {"documents": [], "total_count": 0, "limit": 50, "offset": 0}


async def test_documents_paginate_with_a_total(crawled: Crawled) -> None:
    first = (
        await crawled.http.get("/api/documents", params={"limit": 3, "order_by": "title", "order_dir": "asc"})
    ).json()
    rest = (
        await crawled.http.get(
            "/api/documents", params={"limit": 3, "offset": 3, "order_by": "title", "order_dir": "asc"}
        )
    ).json()

    titles = [d["title"] for d in first["documents"] + rest["documents"]]
    assert titles == sorted(titles) and len(titles) == 4
    assert (first["total_count"], first["limit"], first["offset"]) == (4, 3, 0)


@pytest.mark.parametrize(
    "path", ["", "/logs", "/urls", "/documents", "/events"], ids=["job", "logs", "urls", "documents", "events"]
)
async def test_unknown_job_is_404_everywhere(crawled: Crawled, path: str) -> None:
    response = await crawled.http.get(f"/api/jobs/no-such-job{path}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_unknown_document_is_404(crawled: Crawled) -> None:
    response = await crawled.http.get("/api/documents/no-such-document")

    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/jobs/{id}/logs", {"level": "loud"}, "level"),
        ("/api/jobs/{id}/logs", {"order": "sideways"}, "order"),
        ("/api/jobs/{id}/urls", {"state": "lost"}, "state"),
        ("/api/jobs", {"order_by": "status"}, "order_by"),
        ("/api/documents", {"order_by": "url"}, "order_by"),
        ("/api/documents", {"limit": 501}, "limit"),
        ("/api/jobs", {"offset": 2**31}, "offset"),
    ],
    ids=["log-level", "log-order", "url-state", "job-order-by", "document-order-by", "limit", "offset-beyond-int32"],
)
async def test_bad_parameters_are_400_naming_the_field(
    crawled: Crawled, path: str, params: dict[str, Any], field: str
) -> None:
    response = await crawled.http.get(path.format(id=crawled.job["id"]), params=params)

    assert response.status_code == 400
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def parse_sse(text: str) -> list[tuple[int | None, str, dict[str, Any]]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            frames.append((int(fields["id"]) if "id" in fields else None, fields["event"], json.loads(fields["data"])))
    return frames


async def test_a_finished_job_streams_its_snapshot_then_204_on_reconnect(crawled: Crawled) -> None:
    url = f"/api/jobs/{crawled.job['id']}/events"
    response = await crawled.http.get(url)
    frames = parse_sse(response.text)

    reconnect = await crawled.http.get(url, headers={"Last-Event-ID": str(frames[0][0])})

    assert response.headers["content-type"].startswith("text/event-stream")
    assert [f[1] for f in frames] == ["snapshot"]
    assert frames[0][2]["job"]["status"] == "completed" and frames[0][0] > 0
    assert reconnect.status_code == 204 and reconnect.content == b""  # EventSource stops reconnecting


async def test_job_events_resume_after_last_event_id_without_loss(crawled: Crawled) -> None:
    url = f"/api/jobs/{crawled.job['id']}/events"
    everything = parse_sse((await crawled.http.get(url, headers={"Last-Event-ID": "1"})).text)
    ids = [f[0] for f in everything if f[0] is not None]
    middle = ids[len(ids) // 2]

    resumed = parse_sse((await crawled.http.get(url, headers={"Last-Event-ID": str(middle)})).text)
    by_query = parse_sse((await crawled.http.get(url, params={"last_event_id": middle})).text)

    assert len(ids) >= 3 and ids == sorted(ids)
    assert [f[0] for f in resumed if f[0] is not None] == [i for i in ids if i > middle]
    assert resumed == by_query
    assert resumed[-1][1] == "completed"


async def test_execution_events_resume_after_last_event_id_without_loss(crawled: Crawled) -> None:
    url = f"/api/executions/{crawled.execution['id']}/events"
    snapshot = parse_sse((await crawled.http.get(url)).text)
    everything = parse_sse((await crawled.http.get(url, headers={"Last-Event-ID": "1"})).text)
    ids = [f[0] for f in everything if f[0] is not None]
    middle = ids[len(ids) // 2]

    resumed = parse_sse((await crawled.http.get(url, headers={"Last-Event-ID": str(middle)})).text)

    assert [f[1] for f in snapshot] == ["snapshot"] and snapshot[0][0] == ids[-1]
    assert [f[0] for f in resumed] == [i for i in ids if i > middle]
    assert everything[-1][1] == "completed"
    assert all(f[2]["execution"]["id"] == crawled.execution["id"] for f in resumed)


async def test_bad_last_event_id_is_400(crawled: Crawled) -> None:
    response = await crawled.http.get(f"/api/jobs/{crawled.job['id']}/events", headers={"Last-Event-ID": "soon"})

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID"
