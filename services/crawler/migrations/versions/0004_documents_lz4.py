"""documents: Markdown and the search vector compressed with lz4 where PostgreSQL has it.

A page's Markdown (and its tsvector) is usually over the 2 kB at which PostgreSQL compresses a
row; pglz costs about 0.1 ms of the database's CPU per stored page, lz4 a fraction of that, for a
slightly larger table. Rows already stored keep their compression until they are rewritten.
A server built without lz4 keeps pglz; SQLite has nothing to change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("markdown", "search")


def _has_lz4() -> bool:
    return bool(
        op.get_bind()
        .execute(sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"))
        .scalar()
    )


def _set_compression(method: str) -> None:
    if op.get_bind().dialect.name != "postgresql" or not _has_lz4():
        return
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE documents ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
