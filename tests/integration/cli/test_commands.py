"""`quaero apply`, `definitions`, `jobs`, `docs`, `executions` against a real stack, and the rule
for every error a user can cause: one `quaero: …` line on stderr and a non-zero exit code."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli.conftest import Result, run_cli, start_cli
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite

SOURCE_TOML = """
kind = "source"
id = "birds"
name = "Birds"
base_url = "{url}"

[crawl]
max_depth = 1
"""
DEFINITION_TOML = """
id = "birds-crawl"
name = "Crawl the birds"
type = "crawler"
sources = ["birds"]

[[steps]]
name = "crawl"
action = "crawl"
"""
DEFINITION_JSON = {"id": "tidy", "name": "Tidy", "type": "custom", "steps": [{"name": "r", "action": "reindex"}]}


def one_error_line(result: Result, code: int) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    assert result.code == code, result
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("quaero: ")
    return result.err_lines[0]


@pytest.fixture
def files(tmp_path: Path, site: LocalSite) -> Path:
    folder = tmp_path / "defs"
    (folder / "sources").mkdir(parents=True)
    (folder / "sources" / "birds.toml").write_text(SOURCE_TOML.format(url=site.url("/")))
    (folder / "birds.toml").write_text(DEFINITION_TOML)
    (folder / "tidy.json").write_text(json.dumps(DEFINITION_JSON))
    return folder


async def test_apply_creates_then_updates_sources_before_definitions(files: Path, quaero: Any) -> None:
    first = await quaero("apply", "-f", str(files))
    second = await quaero("apply", "-f", str(files / "birds.toml"), "-f", str(files / "tidy.json"))

    assert first.code == 0, first.err
    assert first.out.splitlines() == [
        f"created source birds ({files / 'sources' / 'birds.toml'})",
        f"created job definition birds-crawl ({files / 'birds.toml'})",
        f"created job definition tidy ({files / 'tidy.json'})",
    ]
    assert second.code == 0 and [line.split(" (")[0] for line in second.out.splitlines()] == [
        "updated job definition birds-crawl",
        "updated job definition tidy",
    ]


async def test_apply_reports_each_refused_document_and_applies_the_rest(files: Path, quaero: Any) -> None:
    (files / "bad.toml").write_text(
        'id = "bad"\nname = "Bad"\ntype = "crawler"\n[[steps]]\nname = "x"\naction = "explode"\n'
    )

    result = await quaero("apply", "-f", str(files))

    line = one_error_line(result, 2)
    assert line.startswith(f"quaero: {files / 'bad.toml'}: steps[0].action: unknown action")
    assert "created job definition birds-crawl" in result.out


async def test_definitions_list_show_disable_enable_delete(files: Path, quaero: Any) -> None:
    await quaero("apply", "-f", str(files))

    listed = await quaero("definitions", "list")
    as_json = json.loads((await quaero("definitions", "list", "--json")).out)
    shown = await quaero("definitions", "show", "birds-crawl")
    disabled = await quaero("definitions", "disable", "birds-crawl")
    refused = await quaero("execute", "birds-crawl")
    enabled = await quaero("definitions", "enable", "birds-crawl")
    deleted = await quaero("definitions", "delete", "tidy")
    gone = await quaero("definitions", "show", "tidy")

    assert re.search(r"^birds-crawl\s+Crawl the birds\s+crawler\s+yes\s+-\s+crawl", listed.out, re.MULTILINE)
    assert {d["id"] for d in as_json["job_definitions"]} == {"birds-crawl", "tidy"} and as_json["total_count"] == 2
    assert re.search(r"^sources\s+birds$", shown.out, re.MULTILINE)
    assert disabled.out == "Disabled job definition birds-crawl\n"
    assert "disabled" in one_error_line(refused, 2)
    assert enabled.out == "Enabled job definition birds-crawl\n"
    assert deleted.out == "Deleted job definition tidy\n"
    assert "not found" in one_error_line(gone, 1)


async def test_jobs_docs_and_executions_after_a_crawl(
    files: Path, quaero: Any, tmp_path: Path, site: LocalSite
) -> None:
    await quaero("apply", "-f", str(files))
    watched = await quaero("execute", "birds-crawl", "--watch", "--json")
    execution_id = json.loads(watched.out)["execution"]["id"]
    (job_id,) = [j["id"] for j in json.loads((await quaero("jobs", "list", "--json")).out)["jobs"]]

    jobs = await quaero("jobs", "list", "--execution", execution_id)
    job = await quaero("jobs", "show", job_id)
    logs = await quaero("jobs", "logs", job_id, "--level", "info", "--oldest-first")
    cancel = await quaero("jobs", "cancel", job_id)
    rerun = await quaero("jobs", "rerun", job_id, "--json")
    executions = await quaero("executions", "list")
    execution = await quaero("executions", "show", execution_id, "--json")
    docs = await quaero("docs", "list", "--job", job_id, "--json")
    pelicans = next(d for d in json.loads(docs.out)["documents"] if d["title"] == "Pelicans")
    markdown = await quaero("docs", "show", pelicans["id"])
    exported = await quaero("docs", "export", "--job", job_id, "-o", str(tmp_path / "md"))
    lines = await quaero("docs", "export", "--format", "jsonl", "--job", job_id, "-o", str(tmp_path / "docs.jsonl"))

    assert watched.code == 0, watched.err
    assert re.search(rf"^{job_id}\s+.*\s+completed\s+4/4 \(100%\)\s+4\s+birds-crawl", jobs.out, re.MULTILINE)
    assert re.search(r"^status\s+completed$", job.out, re.MULTILINE)
    assert re.search(r"^documents\s+4$", job.out, re.MULTILINE)
    assert logs.out.splitlines()[1].split(None, 3)[-1].startswith("Crawl started")
    assert "debug" not in logs.out
    assert "only a running job can be cancelled" in one_error_line(cancel, 1)
    assert json.loads(rerun.out)["original_job_id"] == job_id
    assert re.search(rf"^{execution_id}\s+birds-crawl\s+completed\s+cli", executions.out, re.MULTILINE)
    assert json.loads(execution.out)["execution"]["steps"][0]["crawl_job_ids"] == [job_id]
    assert "Brown pelicans dive for fish" in markdown.out
    assert exported.err.strip() == f"Exported 4 documents to {tmp_path / 'md'}/"
    files_written = sorted(p.name for p in (tmp_path / "md").iterdir())
    assert len(files_written) == 4 and all(name.endswith(".md") for name in files_written)
    page = next(p for p in (tmp_path / "md").iterdir() if "pelicans" in p.name).read_text()
    assert page.startswith('---\ntitle: "Pelicans"\n') and "Brown pelicans dive for fish" in page
    records = [json.loads(line) for line in (tmp_path / "docs.jsonl").read_text().splitlines()]
    assert lines.code == 0 and len(records) == 4 and all(r["markdown"] for r in records)


async def test_export_writes_a_file_for_each_document_of_one_url_whose_ids_share_a_prefix(
    stack: Stack, site: LocalSite, quaero: Any, tmp_path: Path
) -> None:
    """Two sources over one site store each page twice; their documents' ids are made to share
    the first 30 characters (as ids of an older release's scheme could)."""
    from sqlalchemy import select, update

    from libs.db import Database
    from services.crawler.store import DocumentRow
    from tests.support.runs import add_source, define, execute, wait_for

    for source_id in ("birds-a", "birds-b"):
        await add_source(stack, source_id, site.url("/pelicans.html"), crawl={"max_depth": 0})
    await define(stack, {"id": "twice", "sources": ["birds-a", "birds-b"], "steps": [{"name": "c", "action": "crawl"}]})
    await wait_for(stack, (await execute(stack, "twice"))["execution_id"])
    crawler_db = Database(stack.database_url.replace("/executor.db", "/crawler.db"), "crawler")
    try:
        async with crawler_db.session() as session:
            ids = (await session.execute(select(DocumentRow.id).order_by(DocumentRow.source_id))).scalars().all()
            for n, document_id in enumerate(ids, 1):
                shared = f"0f3a9c1e-0000-4000-8000-{n:012d}"
                await session.execute(update(DocumentRow).where(DocumentRow.id == document_id).values(id=shared))
    finally:
        await crawler_db.close()

    exported = await quaero("docs", "export", "-o", str(tmp_path / "md"))

    files = sorted((tmp_path / "md").iterdir())
    assert len(ids) == 2 and len(files) == 2
    assert exported.err.strip() == f"Exported 2 documents to {tmp_path / 'md'}/"
    assert {f.read_text().split('id: "')[1][:36] for f in files} == {
        "0f3a9c1e-0000-4000-8000-000000000001", "0f3a9c1e-0000-4000-8000-000000000002",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["jobs", "show"], 2, "quaero: Missing argument 'ID'. (see `quaero jobs show --help`)"),
        (["jobs", "list", "--status", "lost"], 2, "quaero: Invalid value for '--status'"),
        (["jobs", "logs", "x", "--level", "loud"], 2, "quaero: Invalid value for '--level'"),
        (["crawl", "docs.example.com"], 2, "quaero: URL: must be an http:// or https:// URL"),
        (["crawl", "https://example.com/", "--depth", "-1"], 2, "quaero: Invalid value for '--depth'"),
        (["apply", "-f", "/no/such/file.toml"], 2, "quaero: /no/such/file.toml: no such file or directory"),
        (["no-such-command"], 2, "quaero: No such command 'no-such-command'."),
        (["definitions", "show", "ghost"], 1, "quaero: job definition 'ghost' not found"),
        (["execute", "ghost"], 1, "quaero: job definition 'ghost' not found"),
        (["jobs", "show", "ghost"], 1, "quaero: crawl job ghost not found"),
        (["docs", "show", "ghost"], 1, "quaero: document ghost not found"),
        (["executions", "show", "ghost"], 1, "quaero: execution 'ghost' not found"),
        (["docs", "search", " "], 2, "quaero: QUERY: must not be empty"),
        (["definitions", "show", "a/b"], 2, "quaero: ID 'a/b': ids never contain '/'"),
        (["jobs", "show", "a b"], 1, "quaero: crawl job a b not found"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
async def test_user_errors_are_one_line_and_non_zero(quaero: Any, args: list[str], code: int, message: str) -> None:
    result = await quaero(*args)

    assert one_error_line(result, code).startswith(message)
    assert result.out == ""


async def test_an_unreachable_gateway_is_one_line_and_exit_1() -> None:
    result = await run_cli("definitions", "list", url="http://127.0.0.1:9")

    assert one_error_line(result, 1) == (
        "quaero: cannot reach Quaero at http://127.0.0.1:9 (is it running? start it with `make run`)"
    )


async def test_a_missing_or_wrong_token_is_one_line(tmp_path: Path) -> None:
    settings = {**common_settings(None, tmp_path / "data"), "api_token": "s3cret"}
    async with running_stack(settings) as guarded:
        missing = await run_cli("jobs", "list", url=guarded.base_url)
        wrong = await run_cli("jobs", "list", url=guarded.base_url, QUAERO_API_TOKEN="nope")
        right = await run_cli("jobs", "list", url=guarded.base_url, QUAERO_API_TOKEN="s3cret")

    assert "set QUAERO_API_TOKEN" in one_error_line(missing, 1)
    assert one_error_line(wrong, 1).startswith("quaero: wrong API token")
    assert right.code == 0 and "no crawl jobs yet" in right.err


async def test_up_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    # Ports 0 and its own data directory, should it start after all.
    ports = {f"QUAERO_{name}_PORT": "0" for name in ("GATEWAY", "GATEWAY_GRPC", "EXECUTOR", "CRAWLER")}
    process = await start_cli(
        "up", url="http://127.0.0.1:9", QUAERO_BIND_HOST="0.0.0.0", QUAERO_DATA_DIR=str(tmp_path), **ports
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    result = Result(process.returncode, out.decode(), err.decode())

    line = one_error_line(result, 2)
    assert line.startswith("quaero: QUAERO_BIND_HOST='0.0.0.0' accepts connections from other machines")
    assert "set QUAERO_API_TOKEN" in line and "QUAERO_ALLOW_UNAUTHENTICATED=true" in line


async def test_help_lists_every_command(quaero: Any, stack: Stack) -> None:
    result = await quaero("--help")

    assert result.code == 0
    for command in ("up", "apply", "execute", "crawl", "definitions", "executions", "jobs", "docs"):
        assert re.search(rf"^\s+{command}\s", result.out, re.MULTILINE), command
