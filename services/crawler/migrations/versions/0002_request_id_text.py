"""crawl_jobs.request_id becomes text: a request id of any length never fails the insert of a job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On SQLite the batch copies the table (SQLite never enforced the length; the declared type
    # follows so both schemas say the same); on PostgreSQL it is one ALTER COLUMN.
    with op.batch_alter_table("crawl_jobs") as batch:
        batch.alter_column("request_id", existing_type=sa.String(64), type_=sa.Text, existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("crawl_jobs") as batch:
        batch.alter_column("request_id", existing_type=sa.Text, type_=sa.String(64), existing_nullable=False)
