"""Change-driven post-jobs and signed webhooks: a definition's post_jobs_when and webhooks, a
post-job's parent_changes, and the webhook outbox (one row per delivery, written in the
transaction of the event it announces).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("job_definitions") as batch:
        batch.add_column(sa.Column("post_jobs_when", sa.String(16), nullable=False, server_default="success"))
        batch.add_column(sa.Column("webhooks", JSON, nullable=False, server_default="[]"))
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("parent_changes", JSON, nullable=True))
    op.create_table(
        "webhook_deliveries",
        # Also the webhook-id header: receivers de-duplicate retries on it.
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("job_definition_id", sa.String(128), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        # The exact bytes signed and sent, the same on every attempt.
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        # When it is due; while an attempt is in flight, when that attempt's claim lapses.
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME, nullable=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_execution", "webhook_deliveries", ["execution_id", "created_at"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("parent_changes")
    with op.batch_alter_table("job_definitions") as batch:
        batch.drop_column("webhooks")
        batch.drop_column("post_jobs_when")
