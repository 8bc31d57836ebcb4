"""The `quaero` command line: runs Quaero (`up`, `migrate`) and talks to its REST API."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

# Typer carries its own copy of click; its exceptions are the ones raised here.
from typer._click import exceptions as click_errors

from cli import apply, definitions, docs, execute, executions, jobs
from cli.client import DEFAULT_URL, Target
from cli.errors import FAILURE, INTERRUPTED, USAGE, CliError

if TYPE_CHECKING:
    from libs.settings import CommonSettings

app = typer.Typer(
    help="Quaero: crawl websites into a searchable knowledge base, driven by job definitions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def connect(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="QUAERO_URL", help="The Quaero gateway.", show_default=True)
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="QUAERO_API_TOKEN",
            help="Bearer token, when the gateway requires one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = Target(url=url, token=token or None)


def _settings() -> CommonSettings:
    """The QUAERO_* settings, or one line saying what is wrong with them."""
    from pydantic import ValidationError

    from libs.settings import CommonSettings

    try:
        return CommonSettings()
    except ValidationError as exc:
        problems = [
            (f"QUAERO_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise CliError("; ".join(problems), USAGE) from None


@app.command()
def up() -> None:
    """Start gateway, executor, crawler and workers in one process (embedded defaults)."""
    settings = _settings()  # first: bad settings are reported before the services' modules load
    from cli.up import run_embedded
    from libs.grpc_server import run_process
    from libs.logs import configure_logging

    configure_logging("quaero", settings.log_level)
    run_process(lambda stop: run_embedded(stop, announce=lambda text: print(text, file=sys.stderr, flush=True)))


@app.command()
def migrate() -> None:
    """Create or upgrade every service's tables (PostgreSQL schemas or SQLite files)."""
    from cli.up import migrate_all
    from libs.logs import configure_logging

    settings = _settings()
    configure_logging("migrate", settings.log_level)
    asyncio.run(migrate_all(settings.database_url_for))


app.command("apply")(apply.apply)
app.command("execute")(execute.execute)
app.command("crawl")(execute.crawl)
app.add_typer(definitions.app, name="definitions")
app.add_typer(executions.app, name="executions")
app.add_typer(jobs.app, name="jobs")
app.add_typer(docs.app, name="docs")


def _fail(message: str, code: int) -> None:
    print(f"quaero: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run a command; every failure is one `quaero: …` line on stderr and a non-zero exit code."""
    try:
        result = app(args=argv, prog_name="quaero", standalone_mode=False)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    except click_errors.NoArgsIsHelpError as exc:
        # A group run without a command: its help is what the user wants to see.
        print(exc.ctx.get_help() if exc.ctx else str(exc), file=sys.stderr)
        sys.exit(USAGE)
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "quaero"
        _fail(f"{exc.format_message()} (see `{command} --help`)", USAGE)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", INTERRUPTED)
    except Exception as exc:
        if os.environ.get("QUAERO_DEBUG"):
            raise
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (QUAERO_DEBUG=1 shows the traceback)", FAILURE)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
