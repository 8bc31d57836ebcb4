"""The `quaero` command line."""

from __future__ import annotations

import asyncio
import sys

import typer

from libs.grpc_server import run_process
from libs.logs import configure_logging
from libs.settings import CommonSettings

app = typer.Typer(
    help="Quaero: crawl websites into a searchable knowledge base, driven by job definitions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def up() -> None:
    """Start gateway, executor, crawler and workers in one process (embedded defaults)."""
    from cli.up import run_embedded

    settings = CommonSettings()
    configure_logging("quaero", settings.log_level)
    run_process(lambda stop: run_embedded(stop, announce=lambda text: print(text, file=sys.stderr, flush=True)))


@app.command()
def migrate() -> None:
    """Create or upgrade every service's tables (PostgreSQL schemas or SQLite files)."""
    from cli.up import migrate_all

    settings = CommonSettings()
    configure_logging("migrate", settings.log_level)
    asyncio.run(migrate_all(settings.database_url_for))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
