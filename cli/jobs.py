"""`quaero jobs …`: crawl jobs: list, show, cancel, rerun and read their logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from cli import output
from cli.client import call, segment

app = typer.Typer(help="Crawl jobs: one per source per crawl step, with progress and logs.", no_args_is_help=True)

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
Level = Literal["debug", "info", "warn", "warning", "error"]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The crawl job's id.")]


def progress(job: dict[str, Any]) -> str:
    p = job["progress"]
    return f"{p['completed_urls']}/{p['total_urls']} ({p['percentage']:.0f}%)"


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option("--status", "-s")] = None,
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Of this job definition.")] = None,
    execution: Annotated[str | None, typer.Option("--execution", "-e", help="Of this execution.")] = None,
    limit: output.LimitOption = 20,
    as_json: output.JsonFlag = False,
) -> None:
    """List crawl jobs, newest first."""
    page = call(
        ctx.obj,
        lambda api: api.get(
            "/api/jobs", status=status, job_definition_id=definition, execution_id=execution, limit=limit
        ),
    )
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["ID", "NAME", "STATUS", "PROGRESS", "DOCS", "DEFINITION", "CREATED"],
        (
            [
                j["id"],
                j["name"],
                output.status(j["status"]),
                progress(j),
                j["result_count"],
                j["metadata"]["job_definition_id"],
                output.when(j["created_at"]),
            ]
            for j in page["jobs"]
        ),
        empty="no crawl jobs yet: try `quaero crawl https://…`",
    )
    output.footer(len(page["jobs"]), page["total_count"], "crawl jobs")


def _print_job(job: dict[str, Any]) -> None:
    p = job["progress"]
    output.fields(
        [
            ("id", job["id"]),
            ("name", job["name"]),
            ("status", output.status(job["status"])),
            ("source", f"{job['source_id']} ({job['source_type']})"),
            ("seeds", ", ".join(job["seed_urls"])),
            ("progress", progress(job)),
            ("urls", f"{p['failed_urls']} failed, {p['skipped_urls']} skipped, {p['pending_urls']} pending"),
            ("documents", job["result_count"]),
            ("definition", job["metadata"]["job_definition_id"]),
            ("execution", job["metadata"]["execution_id"]),
            ("rerun of", job["metadata"]["rerun_of"]),
            ("error", job["error"]),
            ("started", output.when(job["started_at"] or job["created_at"])),
            ("duration", output.duration(job["started_at"] or job["created_at"], job["completed_at"])),
        ]
    )


@app.command("show")
def show(ctx: typer.Context, job_id: IdArgument, as_json: output.JsonFlag = False) -> None:
    """Show a crawl job with its progress counters."""
    job = call(ctx.obj, lambda api: api.get(f"/api/jobs/{segment(job_id)}"))
    if as_json:
        output.print_json(job)
    else:
        _print_job(job)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: IdArgument, as_json: output.JsonFlag = False) -> None:
    """Cancel a running crawl job."""
    job = call(ctx.obj, lambda api: api.post(f"/api/jobs/{segment(job_id)}/cancel"))
    if as_json:
        output.print_json(job)
    else:
        output.stdout().print(f"Cancelled crawl job {job_id}")


@app.command("rerun")
def rerun(ctx: typer.Context, job_id: IdArgument, as_json: output.JsonFlag = False) -> None:
    """Run a crawl job again as a new job (same seeds, config and source)."""
    result = call(ctx.obj, lambda api: api.post(f"/api/jobs/{segment(job_id)}/rerun"))
    if as_json:
        output.print_json(result)
    else:
        output.stdout().print(f"Started crawl job {result['new_job_id']} (a rerun of {job_id})")


@app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: IdArgument,
    level: Annotated[Level | None, typer.Option("--level", "-l", help="This level and above.")] = None,
    oldest_first: Annotated[bool, typer.Option("--oldest-first", help="Oldest lines first.")] = False,
    limit: output.LimitOption = 100,
    as_json: output.JsonFlag = False,
) -> None:
    """A crawl job's log, newest first."""
    page = call(
        ctx.obj,
        lambda api: api.get(
            f"/api/jobs/{segment(job_id)}/logs", level=level, order="asc" if oldest_first else "desc", limit=limit
        ),
    )
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["TIME", "LEVEL", "MESSAGE"],
        ([output.when(e["timestamp"]), output.status(e["level"]), e["message"]] for e in page["logs"]),
        empty="no log lines",
    )
    output.footer(len(page["logs"]), page["total_count"], "log lines")
