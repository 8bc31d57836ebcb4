"""`quaero execute` and `quaero crawl`: start an execution (trigger `cli`) and follow it live."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from cli import output
from cli.client import Api, Target, call, segment
from cli.errors import USAGE, CliError
from cli.watch import Outcome, watch


async def _start(api: Api, definition_id: str) -> dict[str, Any]:
    started: dict[str, Any] = await api.post(f"/api/job-definitions/{segment(definition_id)}/execute", trigger="cli")
    return started


async def _run(api: Api, definition_id: str, *, watch_it: bool, as_json: bool) -> None:
    """Start an execution; then either say so and return, or follow it to its end."""
    started = await _start(api, definition_id)
    if not watch_it:
        if as_json:
            output.print_json(started)
        else:
            output.stdout().print(
                f"Started execution {started['execution_id']} of {started['job_definition_id']}; "
                f"follow it with: quaero executions show {started['execution_id']}"
            )
        return
    console = output.stderr()
    console.print(
        f"Started execution [bold]{started['execution_id']}[/bold] of [bold]{started['job_definition_id']}[/bold]"
    )
    _conclude(await watch(api, started["execution_id"], console), as_json)


def _as_json(outcome: Outcome) -> dict[str, Any]:
    """The execution, its crawl jobs, and the same for each post-job execution it started."""
    return {
        "execution": outcome.execution,
        "jobs": outcome.jobs,
        "post_job_executions": [_as_json(child) for child in outcome.children],
    }


def _conclude(outcome: Outcome, as_json: bool) -> None:
    """Print how it ended; a failed or cancelled execution is an error (exit 1)."""
    execution = outcome.execution
    if as_json:
        output.print_json(_as_json(outcome))
    else:
        changes = ", ".join(f"{n:,} {kind}" for kind, n in outcome.changes.items())
        output.stdout().print(
            f"{execution['status'].capitalize()}: {outcome.documents:,} documents ({changes}) "
            f"from {len(outcome.jobs)} crawl job{'s' if len(outcome.jobs) != 1 else ''} "
            f"in {output.duration(execution['started_at'] or execution['created_at'], execution['completed_at'])}"
        )
    if execution["status"] != "completed":
        message = (execution.get("error") or {}).get("message") or execution["status"]
        raise CliError(f"execution {execution['id']} {execution['status']}: {message}")


def execute(
    ctx: typer.Context,
    definition_id: Annotated[str, typer.Argument(metavar="ID", help="The job definition to execute.")],
    watch_it: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow it live: a progress bar per crawl job, then its post-jobs.")
    ] = False,
    as_json: output.JsonFlag = False,
) -> None:
    """Execute a job definition (recorded with trigger `cli`)."""
    target: Target = ctx.obj
    call(target, lambda api: _run(api, definition_id, watch_it=watch_it, as_json=as_json))


def crawl_definition_id(url: str) -> str:
    """`crawl-<host>` (plus `-<port>` when the URL names one), within the id alphabet."""
    parts = urlsplit(url)
    host = parts.hostname or "site"
    if parts.port:
        host += f"-{parts.port}"
    return "crawl-" + re.sub(r"[^A-Za-z0-9_.-]", "-", host)[:120]


def crawl_definition(
    url: str, depth: int | None, max_pages: int | None, include: list[str], exclude: list[str]
) -> dict[str, Any]:
    """The definition `quaero crawl` creates or replaces; unset options keep the crawler's defaults."""
    from libs.patterns import PatternError, compile_pattern
    from libs.step_config import check_http_url

    problem = check_http_url(url)
    if problem:
        raise CliError(f"URL: {problem}", USAGE)
    for flag, patterns in (("--include", include), ("--exclude", exclude)):
        for pattern in patterns:
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                raise CliError(f"{flag} {pattern!r}: {exc}", USAGE) from exc
    config: dict[str, Any] = {"start_urls": [url.strip()]}
    if depth is not None:
        config["max_depth"] = depth
    if max_pages is not None:
        config["max_pages"] = max_pages
    if include:
        config["include_patterns"] = include
    if exclude:
        config["exclude_patterns"] = exclude
    definition_id = crawl_definition_id(url)
    return {
        "id": definition_id,
        "name": f"Crawl {urlsplit(url).netloc}",
        "type": "crawler",
        "description": f"Ad-hoc crawl of {url} (quaero crawl)",
        "steps": [{"name": "crawl", "action": "crawl", "config": config}],
    }


def crawl(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to start, e.g. https://docs.example.com/")],
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", min=0, help="Link hops from the URL (default 2).")
    ] = None,
    max_pages: Annotated[
        int | None, typer.Option("--max-pages", "-n", min=1, help="Pages to store at most (default 1000).")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", "-i", help="Only URLs matching this regex (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help="Skip URLs matching this regex (repeatable).")
    ] = None,
    watch_it: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Follow the crawl live (default) or return at once.")
    ] = True,
    as_json: output.JsonFlag = False,
) -> None:
    """Crawl a site now: creates or updates the definition crawl-<host> and executes it."""
    target: Target = ctx.obj
    definition = crawl_definition(url, depth, max_pages, include or [], exclude or [])

    async def run(api: Api) -> None:
        await api.upsert("job-definitions", definition["id"], definition)
        await _run(api, definition["id"], watch_it=watch_it, as_json=as_json)

    call(target, run)
