"""`quaero definitions …`: list, show, delete, enable and disable job definitions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from cli import output
from cli.client import Api, Target, call, segment

app = typer.Typer(help="Job definitions: what to crawl, how, and what runs next.", no_args_is_help=True)

IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The job definition's id.")]


@app.command("list")
def list_definitions(
    ctx: typer.Context,
    type: Annotated[Literal["crawler", "summarizer", "custom"] | None, typer.Option("--type")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled (or disabled) ones.", show_default=False)
    ] = None,
    limit: output.LimitOption = 50,
    as_json: output.JsonFlag = False,
) -> None:
    """List job definitions, newest first."""
    params = {"type": type, "enabled": None if enabled is None else str(enabled).lower()}
    page = call(ctx.obj, lambda api: api.get("/api/job-definitions", limit=limit, **params))
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["ID", "NAME", "TYPE", "ENABLED", "SCHEDULE", "STEPS", "POST-JOBS"],
        (
            [
                d["id"],
                d["name"],
                d["type"],
                "yes" if d["enabled"] else "no",
                d["schedule"],
                ", ".join(s["action"] for s in d["steps"]),
                ", ".join(d["post_jobs"]),
            ]
            for d in page["job_definitions"]
        ),
        empty="no job definitions yet: add some with `quaero apply -f FILE`",
    )
    output.footer(len(page["job_definitions"]), page["total_count"], "job definitions")


@app.command("show")
def show(ctx: typer.Context, definition_id: IdArgument, as_json: output.JsonFlag = False) -> None:
    """Show one job definition with its steps."""
    d = call(ctx.obj, lambda api: api.get(f"/api/job-definitions/{segment(definition_id)}"))
    if as_json:
        output.print_json(d)
        return
    output.fields(
        [
            ("id", d["id"]),
            ("name", d["name"]),
            ("type", d["type"]),
            ("description", d["description"]),
            ("enabled", "yes" if d["enabled"] else "no"),
            ("sources", ", ".join(d["sources"])),
            ("schedule", d["schedule"]),
            ("timeout", d["timeout"]),
            ("post-jobs", ", ".join(d["post_jobs"])),
            ("updated", output.when(d["updated_at"])),
        ]
    )
    output.stdout().print()
    output.table(
        ["#", "STEP", "ACTION", "ON ERROR", "CONFIG"],
        (
            [i, s["name"], s["action"], s["on_error"], ", ".join(f"{k}={v}" for k, v in s["config"].items())]
            for i, s in enumerate(d["steps"])
        ),
    )


@app.command("delete")
def delete(ctx: typer.Context, definition_id: IdArgument) -> None:
    """Delete a job definition (its executions and documents stay)."""
    call(ctx.obj, lambda api: api.delete(f"/api/job-definitions/{segment(definition_id)}"))
    output.stdout().print(f"Deleted job definition {definition_id}")


async def _set_enabled(api: Api, definition_id: str, enabled: bool) -> dict[str, Any]:
    definition: dict[str, Any] = await api.get(f"/api/job-definitions/{segment(definition_id)}")
    body = {k: v for k, v in definition.items() if k not in ("created_at", "updated_at")}
    saved: dict[str, Any] = await api.put(
        f"/api/job-definitions/{segment(definition_id)}", {**body, "enabled": enabled}
    )
    return saved


def _toggle(target: Target, definition_id: str, enabled: bool) -> None:
    call(target, lambda api: _set_enabled(api, definition_id, enabled))
    output.stdout().print(f"{'Enabled' if enabled else 'Disabled'} job definition {definition_id}")


@app.command("enable")
def enable(ctx: typer.Context, definition_id: IdArgument) -> None:
    """Enable a job definition: it may be executed and its schedule runs."""
    _toggle(ctx.obj, definition_id, True)


@app.command("disable")
def disable(ctx: typer.Context, definition_id: IdArgument) -> None:
    """Disable a job definition: executing it is refused and its schedule pauses."""
    _toggle(ctx.obj, definition_id, False)
