"""Job definitions and sources.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_definitions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("sources", JSON, nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("schedule", sa.Text, nullable=False, server_default=""),
        sa.Column("timeout", sa.Text, nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("auto_start", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("config", JSON, nullable=False),
        sa.Column("post_jobs", JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_job_definitions_created_at", "job_definitions", ["created_at"])
    op.create_table(
        "sources",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("base_url", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("crawl", JSON, nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("auth", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_sources_created_at", "sources", ["created_at"])


def downgrade() -> None:
    op.drop_table("sources")
    op.drop_table("job_definitions")
