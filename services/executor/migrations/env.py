"""Alembic environment: migrations run on the connection libs.migrate.migrate() passes in."""

from libs.migrate import run_env

run_env()
