"""cancelled_executions: a marker per execution whose crawl jobs were cancelled, so a crawl step of
that execution arriving later (a replay, a retry, a step racing the cancel) creates no job.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cancelled_executions",
        sa.Column("execution_id", sa.Text, primary_key=True),
        # The reason CancelCrawlJobs gave ("cancelled", "timeout").
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cancelled_executions")
