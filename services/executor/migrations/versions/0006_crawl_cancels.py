"""Durable cancels: the executions whose crawl jobs the crawler has still to cancel, written in
the transaction that cancels or times out the execution, deleted once the crawler confirms.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crawl_cancels",
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
        # cancelled or timeout: the reason the crawl jobs are cancelled with.
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        # When it is due; while an attempt is in flight, when that attempt's claim lapses.
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_crawl_cancels_due", "crawl_cancels", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("crawl_cancels")
