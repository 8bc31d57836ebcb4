"""Live progress of an execution: a bar per crawl job, a line per step, and the same for every
post-job execution it starts, until all of them end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from cli.client import Api

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_JOB_EVENTS = frozenset({"step_accepted", "step_progress", "step_completed", "step_failed"})
_MARKS = {"completed": "[green]✓[/green]", "failed": "[red]✗[/red]", "cancelled": "[magenta]■[/magenta]"}


@dataclass
class Outcome:
    """How one watched execution ended, with the post-job executions it started."""

    execution: dict[str, Any]
    jobs: list[dict[str, Any]]
    children: list[Outcome] = field(default_factory=list)

    @property
    def documents(self) -> int:
        return sum(int(job.get("result_count") or 0) for job in self.jobs)

    @property
    def changes(self) -> dict[str, int]:
        """What its crawl jobs found, summed: new, changed, unchanged and removed documents."""
        return {
            kind: sum(int((job.get("changes") or {}).get(kind) or 0) for job in self.jobs)
            for kind in ("new", "changed", "unchanged", "removed")
        }


class Watcher:
    def __init__(self, api: Api, console: Console) -> None:
        self.api = api
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._bars: dict[str, TaskID] = {}

    def say(self, text: str) -> None:
        self.progress.console.print(text)

    async def run(self, execution_id: str) -> Outcome:
        with self.progress:
            return await self._watch(execution_id, depth=0)

    async def _job_bar(self, job_id: str, indent: str) -> TaskID:
        if job_id not in self._bars:
            job = await self.api.get(f"/api/jobs/{job_id}")
            label = ", ".join(job.get("seed_urls") or []) or job.get("source_id") or job_id
            self._bars[job_id] = self.progress.add_task(f"{indent}  {escape(label)}", total=None, counts="", status="")
            self._update(job_id, {**job["progress"], "status": job["status"]})
        return self._bars[job_id]

    def _update(self, job_id: str, summary: dict[str, Any]) -> None:
        total = int(summary.get("total_urls") or 0)
        done = int(summary.get("completed_urls") or 0)
        status = str(summary.get("status") or "")
        counts = f"{done}/{total} urls"
        if summary.get("failed_urls"):
            counts += f", {summary['failed_urls']} failed"
        if summary.get("skipped_urls"):
            counts += f", {summary['skipped_urls']} skipped"
        finished = status in TERMINAL
        self.progress.update(
            self._bars[job_id],
            total=max(total, 1) if total or finished else None,
            completed=done if total else (1 if finished else 0),
            counts=counts,
            status=_status_markup(status),
        )

    async def _watch(self, execution_id: str, depth: int) -> Outcome:
        indent = "   " * depth
        execution: dict[str, Any] = {}
        async for event in self.api.events(f"/api/executions/{execution_id}/events"):
            execution = event.data["execution"]
            kind = event.type
            payload = event.data["event"].get("payload") or {}
            name = escape(execution["job_definition_id"])
            if kind == "snapshot":
                self.say(f"{indent}[bold]{name}[/bold]: execution {execution['id']} {execution['status']}")
            elif kind == "step_started":
                step = execution["steps"][payload["step_index"]]
                attempt = f" (attempt {payload['attempt']})" if payload.get("attempt", 1) > 1 else ""
                self.say(f"{indent}  step [bold]{escape(step['name'])}[/bold] ({step['action']}){attempt}")
            elif kind == "step_retry":
                self.say(f"{indent}  [yellow]step failed; retrying in {payload.get('delay_seconds', 0):g}s[/yellow]")
            for step in execution["steps"]:
                for job_id in step["crawl_job_ids"]:
                    await self._job_bar(job_id, indent)
            if kind in _JOB_EVENTS:
                for summary in payload.get("jobs", []):
                    if summary.get("crawl_job_id") in self._bars:
                        self._update(summary["crawl_job_id"], summary)
            if kind in TERMINAL or (kind == "snapshot" and execution["status"] in TERMINAL):
                break
        if not execution or execution["status"] not in TERMINAL:
            execution = await self.api.get(f"/api/executions/{execution_id}")
        jobs = await self.api.pages("/api/jobs", "jobs", execution_id=execution_id)
        for job in jobs:
            await self._job_bar(job["id"], indent)
            self._update(job["id"], {**job["progress"], "status": job["status"]})
        self._report(execution, indent)
        children = [
            self._watch(triggered["execution_id"], depth + 1) for triggered in execution["post_jobs"]["triggered"]
        ]
        return Outcome(execution, jobs, list(await asyncio.gather(*children)))

    def _report(self, execution: dict[str, Any], indent: str) -> None:
        status = execution["status"]
        line = f"{indent}{_MARKS.get(status, '')} [bold]{escape(execution['job_definition_id'])}[/bold] {status}"
        if execution.get("error"):
            line += f": {escape(execution['error']['message'])}"
        self.say(line)
        for triggered in execution["post_jobs"]["triggered"]:
            self.say(f"{indent}  ↳ post-job [bold]{escape(triggered['job_definition_id'])}[/bold] started")
        for skipped in execution["post_jobs"]["skipped"]:
            detail = f": {skipped['detail']}" if skipped.get("detail") else ""
            self.say(
                f"{indent}  ↳ post-job {escape(skipped['job_definition_id'])} skipped "
                f"({skipped['reason']}{escape(detail)})"
            )


def _status_markup(status: str) -> str:
    colours = {"running": "cyan", "completed": "green", "failed": "red", "cancelled": "magenta", "pending": "yellow"}
    return f"[{colours[status]}]{status}[/{colours[status]}]" if status in colours else status


async def watch(api: Api, execution_id: str, console: Console) -> Outcome:
    return await Watcher(api, console).run(execution_id)
