"""Publishers: who holds each lease, and a heartbeat per publishing process.

- crawl_urls.leased_by: the publisher (a worker or crawler process) that leased the URL's task
  last, written wherever a lease is taken (dispatch, the pump, crawl_settle());
- crawl_publishers: one row per live publisher (`id`, `heartbeat_at`), renewed every second or
  so. The pump republishes the leases of a publisher silent for longer than
  QUAERO_PUBLISHER_TIMEOUT at once (a SIGKILLed worker's committed but unpublished tasks), not
  after the visibility timeout, and deletes the row once none of its leases is left;
- crawl_settle() (PostgreSQL) takes the publisher as `p_publisher`: revision 0009's function with
  that parameter and `leased_by = p_publisher` in its lease, nothing else changed.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)

# Revision 0009's function, changed in exactly these places (each must occur once).
_CHANGES = (
    ("p_guard boolean, p_waiting int,\n", "p_guard boolean, p_waiting int, p_publisher text,\n"),
    (
        "UPDATE crawl_urls u SET published_at = p_now, publications = u.publications + 1\n",
        "UPDATE crawl_urls u SET published_at = p_now, publications = u.publications + 1, leased_by = p_publisher\n",
    ),
)


def _revision_0009() -> ModuleType:
    spec = importlib.util.spec_from_file_location("revision_0009", Path(__file__).with_name("0009_freshness.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _function(previous: str) -> str:
    for old, new in _CHANGES:
        if previous.count(old) != 1:
            raise RuntimeError(f"revision 0009's crawl_settle() has not exactly one {old.strip()!r}")
        previous = previous.replace(old, new)
    return previous


def upgrade() -> None:
    with op.batch_alter_table("crawl_urls") as batch:
        batch.add_column(sa.Column("leased_by", sa.Text, nullable=True))
    op.create_table(
        "crawl_publishers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("heartbeat_at", TIME, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        previous = _revision_0009()
        op.execute("DROP FUNCTION crawl_settle")
        op.execute(_function(previous._FUNCTION))
        for setting in previous._SETTINGS:
            op.execute(f"ALTER FUNCTION crawl_settle {setting}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        previous = _revision_0009()
        op.execute("DROP FUNCTION crawl_settle")
        op.execute(previous._FUNCTION)
        for setting in previous._SETTINGS:
            op.execute(f"ALTER FUNCTION crawl_settle {setting}")
    op.drop_table("crawl_publishers")
    with op.batch_alter_table("crawl_urls") as batch:
        batch.drop_column("leased_by")
