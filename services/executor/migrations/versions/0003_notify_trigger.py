"""PostgreSQL notifies watchers of an execution from a trigger on its event rows, so writers need
no extra statement (SQLite, single-process, signals in-process instead).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The channel name must match services.executor.ledger.channel().
    op.execute(
        """
        CREATE FUNCTION notify_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('exec_' || replace(NEW.execution_id, '-', ''), '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER execution_events_notify AFTER INSERT ON execution_events"
        " FOR EACH ROW EXECUTE FUNCTION notify_execution_event()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER execution_events_notify ON execution_events")
    op.execute("DROP FUNCTION notify_execution_event()")
