"""llms.txt, llms-full.txt and chunks through the REST API and `quaero docs export`, on a crawled local site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli.test_commands import one_error_line
from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack
from tests.support.site import LocalSite


@pytest.fixture
async def crawled(stack: Stack, site: LocalSite) -> Stack:
    response = await stack.http.post(
        "/api/sources", json={"id": "birds", "name": "Birds", "base_url": site.url("/"), "crawl": {"max_depth": 1}}
    )
    assert response.status_code == 201, response.text
    await define(stack, {"id": "birds-crawl", "sources": ["birds"], "steps": [{"name": "c", "action": "crawl"}]})
    execution = await wait_for(stack, (await execute(stack, "birds-crawl"))["execution_id"])
    assert execution["status"] == "completed", execution
    return stack


def expected_llms_txt(site: LocalSite) -> str:
    host = site.base.removeprefix("http://")
    return (
        f"# Birds\n\n> 4 documents crawled from {host}.\n"
        "\n## Pages\n\n"
        f"- [Birds]({site.url('/')}): About Birds\n"
        f"- [Herons]({site.url('/herons.html')}): About Herons\n"
        f"- [Pelicans]({site.url('/pelicans.html')}): About Pelicans\n"
        "\n## More\n\n"
        f"- [More]({site.url('/more/1.html')}): About More\n"
    )


async def test_the_gateway_serves_a_sources_llms_txt(crawled: Stack, site: LocalSite) -> None:
    response = await crawled.http.get("/api/sources/birds/llms.txt")
    full = await crawled.http.get("/api/sources/birds/llms-full.txt")
    missing = await crawled.http.get("/api/sources/ghost/llms.txt")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == expected_llms_txt(site)
    assert full.status_code == 200
    assert full.text.startswith(f"# Birds\n\n> 4 documents crawled from {site.base.removeprefix('http://')}.\n")
    assert f"\n# Pelicans\n\nSource: {site.url('/pelicans.html')}\n\n# Pelicans\n\nBrown pelicans dive" in full.text
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_the_gateway_lists_chunks_and_search_hits_carry_heading_paths(crawled: Stack) -> None:
    hits = (await crawled.http.get("/api/documents", params={"q": "pelicans dive"})).json()["documents"]
    listed = (await crawled.http.get("/api/documents")).json()["documents"]
    chunks = await crawled.http.get(f"/api/documents/{hits[0]['id']}/chunks")
    one = await crawled.http.get(f"/api/documents/{hits[0]['id']}")
    bad = await crawled.http.get(f"/api/documents/{hits[0]['id']}/chunks", params={"max_tokens": 1})

    assert [h["heading_path"] for h in hits] == [["Pelicans"]]
    assert all(d["heading_path"] == [] for d in listed)
    assert chunks.status_code == 200
    body = chunks.json()
    assert body["total_count"] == 1 and body["limit"] == 50 and body["offset"] == 0
    assert [(c["heading_path"], c["text"].split("\n")[0]) for c in body["chunks"]] == [(["Pelicans"], "# Pelicans")]
    assert body["chunks"][0]["tokens"] == (len(body["chunks"][0]["text"]) + 3) // 4
    assert "heading_path" not in one.json()
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "max_tokens"


async def test_docs_export_writes_llms_txt_and_llms_full(
    crawled: Stack, site: LocalSite, quaero: Any, tmp_path: Path
) -> None:
    index = await quaero(
        "docs", "export", "--format", "llms-txt", "--source", "birds", "-o", str(tmp_path / "llms.txt")
    )
    full = await quaero("docs", "export", "--format", "llms-full", "--source", "birds")
    expected_full = (await crawled.http.get("/api/sources/birds/llms-full.txt")).text

    assert index.code == 0, index.err
    assert (tmp_path / "llms.txt").read_text() == expected_llms_txt(site)
    assert index.err.strip() == f"Exported llms.txt of source birds to {tmp_path / 'llms.txt'}"
    assert full.code == 0 and full.out == expected_full


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "llms-txt"], 2, "quaero: --format llms-txt: needs --source"),
        (["--format", "llms-full", "--source", "birds", "--job", "j"], 2, "quaero: --job: not with --format llms-full"),
        (["--format", "llms-txt", "--source", "ghost"], 1, "quaero: source 'ghost' not found"),
    ],
    ids=["no-source", "with-job", "unknown-source"],
)
async def test_docs_export_llms_errors_are_one_line(
    quaero: Any, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = await quaero("docs", "export", *args, "-o", str(tmp_path / "out.txt"))

    assert one_error_line(result, code).startswith(message)
    assert not (tmp_path / "out.txt").exists()


async def test_docs_search_shows_the_heading_path_of_the_best_matching_section(crawled: Stack, quaero: Any) -> None:
    found = await quaero("docs", "search", "pelicans dive")

    assert found.code == 0, found.err
    assert found.out.splitlines()[:3][2] == "Pelicans"


async def test_a_definition_runs_reextract_as_a_step(crawled: Stack) -> None:
    await define(
        crawled,
        {
            "id": "re",
            "type": "custom",
            "steps": [{"name": "r", "action": "reextract", "config": {"source_id": "birds"}}],
        },
    )
    refused = await crawled.http.post(
        "/api/job-definitions",
        json={
            "id": "bad",
            "name": "Bad",
            "type": "custom",
            "steps": [{"name": "r", "action": "reextract", "config": {"refetch": True}}],
        },
    )

    execution = await wait_for(crawled, (await execute(crawled, "re"))["execution_id"])

    assert execution["status"] == "completed", execution
    assert refused.status_code == 400
    assert refused.json()["error"]["details"][0]["field"] == "steps[0].config.refetch"
