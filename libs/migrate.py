"""Run a service's Alembic migrations inside its own schema (PostgreSQL) or file (SQLite)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from libs.db import _IDENT

log = logging.getLogger(__name__)


def _config(migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return cfg


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(url: str, schema: str, migrations_dir: Path, revision: str = "head") -> None:
    """Upgrade to `revision`. On PostgreSQL the schema is created first and an advisory lock
    keeps replicas that start together from migrating at the same time."""
    if not _IDENT.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    is_pg = url.startswith("postgresql")
    connect_args: dict[str, Any] = {"server_settings": {"search_path": schema}} if is_pg else {}
    if not is_pg:
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.begin() as conn:
            if is_pg:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"quaero-migrate-{schema}"}
                )
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.run_sync(_upgrade, _config(migrations_dir), revision)
    finally:
        await engine.dispose()
    log.info("database migrated", extra={"schema": schema, "revision": revision})


def run_env() -> None:
    """The body of every service's migrations/env.py: migrate on the connection `migrate` passes."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `quaero migrate` (libs.migrate.migrate), not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=None,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
