"""How commands print: tables and details for people, plain JSON for scripts (`--json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (for scripts).")]
LimitOption = Annotated[int, typer.Option("--limit", "-L", min=1, help="How many to show.")]

STATUS_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "retrying": "yellow",
    "done": "green",
    "skipped": "dim",
    "queued": "yellow",
    "debug": "dim",
    "warn": "yellow",
    "error": "red",
}


# Wide enough that piped output keeps one row per line for grep and cut.
_PIPE_WIDTH = 240


def stdout() -> Console:
    # Built per call so that it writes to whatever sys.stdout is now (tests swap it).
    width = None if sys.stdout.isatty() else _PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def stderr() -> Console:
    # soft_wrap: a message stays on one line, however long (errors must be one line).
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def status(text: str | None) -> Text:
    text = text or "-"
    return Text(text, style=STATUS_STYLES.get(text, ""))


def _cell(value: Any) -> Text:
    """Values print as they are: `[x]` in a name is text, not rich markup."""
    if isinstance(value, Text):
        return value
    return Text("-" if value is None or value == "" else str(value))


def when(value: str | None) -> str:
    """An RFC 3339 time as local `YYYY-MM-DD HH:MM:SS`."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: str | None, end: str | None) -> str:
    if not start:
        return "-"
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
    seconds = max((finish - begin).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing here yet") -> None:
    rows = list(rows)
    if not rows:
        stderr().print(f"[dim]{empty}[/dim]")
        return
    grid = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        # Fold rather than cut: an id must stay whole to be copied into the next command.
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    stdout().print(grid)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """`name  value` lines, names aligned."""
    pairs = list(pairs)
    width = max((len(name) for name, _ in pairs), default=0)
    console = stdout()
    for name, value in pairs:
        console.print(Text(name.ljust(width) + "  ", style="bold") + _cell(value))


def footer(shown: int, total: int, noun: str) -> None:
    if total > shown:
        stderr().print(f"[dim]{shown} of {total} {noun}; use --limit to see more[/dim]")
