"""document_html: the raw HTML each document was extracted from, lz4-compressed, for `reextract`.

One row per document (its source and URL key, as documents are keyed), written by the worker
after the settle that stored the page: `body` is the fetched bytes as an lz4 frame (the worker
compresses, so SQLite keeps them compressed too), `charset` the one the response declared, `size`
the bytes before compression. PostgreSQL stores `body` out of line without compressing it again
(STORAGE EXTERNAL: an lz4 frame does not shrink further).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_html",
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("url_key", sa.String(40), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("charset", sa.Text(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source_id", "url_key"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE document_html ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("document_html")
