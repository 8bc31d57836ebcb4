"""The run ledger: executions, their events, idempotency keys, schedule firings, auto-starts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("job_definition_id", sa.String(128), nullable=False),
        sa.Column("job_name", sa.Text, nullable=False),
        # The definition as it was when the execution started: later edits do not change a run.
        sa.Column("definition", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("parent_execution_id", sa.String(36), nullable=True),
        sa.Column("lineage", JSON, nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("post_jobs_state", sa.String(16), nullable=False, server_default="none"),
        sa.Column("post_jobs", JSON, nullable=False),
        sa.Column("error_code", sa.String(32), nullable=False, server_default=""),
        sa.Column("error_message", sa.Text, nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        # The executor instance driving it, until lease_until; another may take over after.
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TIME, nullable=True),
        sa.Column("deadline", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
        # A post-job starts at most once per parent, however often the trigger is retried.
        sa.UniqueConstraint("parent_execution_id", "job_definition_id", name="uq_executions_parent_definition"),
    )
    op.create_index("ix_executions_created_at", "executions", ["created_at"])
    op.create_index("ix_executions_definition_status", "executions", ["job_definition_id", "status"])
    op.create_index("ix_executions_status_lease", "executions", ["status", "lease_until"])

    op.create_table(
        "execution_events",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_execution_events_execution_id", "execution_events", ["execution_id", "id"])

    # Idempotency-Key: the first execution a key started, for 24 hours.
    op.create_table(
        "idempotency_keys",
        sa.Column("job_definition_id", sa.String(128), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )

    # Each cron firing is claimed once across every executor replica.
    op.create_table(
        "schedule_firings",
        sa.Column("job_definition_id", sa.String(128), primary_key=True),
        sa.Column("fire_at", TIME, primary_key=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("skipped", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TIME, nullable=False),
    )
    # auto_start runs once per definition version.
    op.create_table(
        "auto_starts",
        sa.Column("job_definition_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("auto_starts", "schedule_firings", "idempotency_keys", "execution_events", "executions"):
        op.drop_table(table)
