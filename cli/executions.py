"""`quaero executions …`: list executions and show one with its steps and post-job lineage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from cli import output
from cli.client import Api, call, segment

app = typer.Typer(help="Executions: each run of a job definition and the post-jobs it started.", no_args_is_help=True)

Status = Literal["pending", "running", "completed", "failed", "cancelled"]


@app.command("list")
def list_executions(
    ctx: typer.Context,
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Of this job definition.")] = None,
    status: Annotated[Status | None, typer.Option("--status", "-s")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Post-jobs started by this execution.")] = None,
    limit: output.LimitOption = 20,
    as_json: output.JsonFlag = False,
) -> None:
    """List executions, newest first."""
    page = call(
        ctx.obj,
        lambda api: api.get(
            "/api/executions", job_definition_id=definition, status=status, parent_execution_id=parent, limit=limit
        ),
    )
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["ID", "DEFINITION", "STATUS", "TRIGGER", "STARTED", "DURATION", "PARENT"],
        (
            [
                e["id"],
                e["job_definition_id"],
                output.status(e["status"]),
                e["trigger"],
                output.when(e["started_at"] or e["created_at"]),
                output.duration(e["started_at"], e["completed_at"]),
                e["parent_execution_id"],
            ]
            for e in page["executions"]
        ),
        empty="no executions yet: start one with `quaero execute ID`",
    )
    output.footer(len(page["executions"]), page["total_count"], "executions")


async def _with_lineage(api: Api, execution_id: str) -> dict[str, Any]:
    """The execution, its ancestors' executions (oldest first) and the executions it started."""
    execution: dict[str, Any] = await api.get(f"/api/executions/{segment(execution_id)}")
    ancestors: list[dict[str, Any]] = []
    parent_id = execution["parent_execution_id"]
    while parent_id and len(ancestors) < 50:
        parent = await api.get(f"/api/executions/{parent_id}")
        ancestors.insert(0, parent)
        parent_id = parent["parent_execution_id"]
    children = await api.pages("/api/executions", "executions", parent_execution_id=execution_id, order_dir="asc")
    return {"execution": execution, "ancestors": ancestors, "children": children}


@app.command("show")
def show(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="The execution's id.")],
    as_json: output.JsonFlag = False,
) -> None:
    """Show an execution: status, steps and crawl jobs, lineage and post-jobs."""
    found = call(ctx.obj, lambda api: _with_lineage(api, execution_id))
    e = found["execution"]
    if as_json:
        output.print_json(found)
        return
    chain = [a["job_definition_id"] for a in found["ancestors"]] or e["lineage"]
    output.fields(
        [
            ("id", e["id"]),
            ("definition", f"{e['job_definition_id']} ({e['job_name']})"),
            ("status", output.status(e["status"])),
            ("trigger", e["trigger"]),
            ("lineage", " → ".join([*chain, e["job_definition_id"]])),
            ("parent", e["parent_execution_id"]),
            ("started", output.when(e["started_at"] or e["created_at"])),
            ("duration", output.duration(e["started_at"], e["completed_at"])),
            ("error", f"{e['error']['code']}: {e['error']['message']}" if e["error"] else None),
        ]
    )
    console = output.stdout()
    console.print()
    output.table(
        ["#", "STEP", "ACTION", "STATUS", "ATTEMPTS", "CRAWL JOBS", "ERROR"],
        (
            [
                s["index"],
                s["name"],
                s["action"],
                output.status(s["status"]),
                s["attempts"],
                ", ".join(s["crawl_job_ids"]),
                s["error"],
            ]
            for s in e["steps"]
        ),
    )
    post_jobs = e["post_jobs"]
    if post_jobs["triggered"] or post_jobs["skipped"]:
        console.print()
        status_of = {c["id"]: c["status"] for c in found["children"]}
        output.table(
            ["POST-JOB", "OUTCOME", "EXECUTION", "DETAIL"],
            [
                *(
                    [
                        t["job_definition_id"],
                        output.status(status_of.get(t["execution_id"], "started")),
                        t["execution_id"],
                        "",
                    ]
                    for t in post_jobs["triggered"]
                ),
                *([s["job_definition_id"], f"skipped: {s['reason']}", "", s["detail"]] for s in post_jobs["skipped"]),
            ],
        )
