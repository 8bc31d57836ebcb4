"""Crawl jobs, the URL frontier, documents (with full-text search), job logs and events,
per-host politeness slots and the robots.txt cache.

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
# An auto-incrementing 64-bit key; on SQLite it must be spelled INTEGER to alias the rowid.
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crawl_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        # The source id, or "adhoc:<job_definition_id>" for a crawl of start_urls.
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("source_type", sa.String(32), nullable=False, server_default="web"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("source_snapshot", JSON, nullable=False),
        sa.Column("seed_urls", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("job_definition_id", sa.String(128), nullable=True),
        sa.Column("execution_id", sa.String(64), nullable=True),
        # "<execution_id>/<step_index>/<attempt>/<source_id>": a StepCall replayed after a broken
        # stream finds the jobs it already created instead of starting new ones.
        sa.Column("step_key", sa.Text, nullable=True, unique=True),
        sa.Column("rerun_of", sa.String(36), nullable=True),
        # Copied out of `config` so the settle statements can read them without parsing JSON.
        sa.Column("max_depth", sa.Integer, nullable=False),
        sa.Column("max_pages", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        # The source's auth headers and cookies: sent only to the source's host, never returned.
        sa.Column("auth", JSON, nullable=True),
        # The request id of the call that created the job: tasks published for it carry it.
        sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("total_urls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("completed_urls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed_urls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("pending_urls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("skipped_urls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("result_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        # When the last "progress" event was appended: progress events are throttled.
        sa.Column("progress_event_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
    )
    op.create_index("ix_crawl_jobs_created_at", "crawl_jobs", ["created_at"])
    op.create_index("ix_crawl_jobs_status", "crawl_jobs", ["status"])
    op.create_index("ix_crawl_jobs_execution_id", "crawl_jobs", ["execution_id"])
    op.create_index("ix_crawl_jobs_job_definition_id", "crawl_jobs", ["job_definition_id"])

    op.create_table(
        "crawl_urls",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("crawl_jobs.id", ondelete="CASCADE"), nullable=False),
        # sha1 of the canonical URL: a fixed-size unique key however long the URL.
        sa.Column("url_key", sa.String(40), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("redirected_to", sa.Text, nullable=True),
        sa.Column("document_id", sa.String(36), nullable=True),
        # Fetched at max_depth, so its links were not followed: reopened if found nearer a seed.
        sa.Column("links_cut", sa.Boolean, nullable=False, server_default=sa.false()),
        # Redirects that led here from a linked URL: past 10 the target is skipped (redirect_limit).
        sa.Column("redirect_hops", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("publications", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("published_at", TIME, nullable=True),
        sa.Column("discovered_from", sa.Text, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("job_id", "url_key", name="uq_crawl_urls_job_url"),
    )
    op.create_index("ix_crawl_urls_job_state_depth", "crawl_urls", ["job_id", "state", "depth", "id"])
    # Dispatch reads the next unpublished URLs by depth; leases count and expire published ones.
    op.create_index(
        "ix_crawl_urls_unpublished",
        "crawl_urls",
        ["job_id", "depth", "id"],
        postgresql_where=sa.text("state = 'queued' AND published_at IS NULL"),
        sqlite_where=sa.text("state = 'queued' AND published_at IS NULL"),
    )
    op.create_index(
        "ix_crawl_urls_published",
        "crawl_urls",
        ["job_id", "published_at"],
        postgresql_where=sa.text("state = 'queued' AND published_at IS NOT NULL"),
        sqlite_where=sa.text("state = 'queued' AND published_at IS NOT NULL"),
    )
    op.create_index("ix_crawl_urls_document_id", "crawl_urls", ["document_id"])

    op.create_table(
        "documents",
        sa.Column("pk", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("url_key", sa.String(40), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False, server_default=""),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("markdown", sa.Text, nullable=False, server_default=""),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("word_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("source_id", "url_key", name="uq_documents_source_url"),
    )
    op.create_index("ix_documents_created_at", "documents", ["created_at"])
    op.create_index("ix_documents_job_id", "documents", ["job_id"])
    op.create_index("ix_documents_updated_at", "documents", ["updated_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE documents ADD COLUMN search tsvector GENERATED ALWAYS AS ("
            " setweight(to_tsvector('english', coalesce(title, '')), 'A') ||"
            " setweight(to_tsvector('english', left(coalesce(markdown, ''), 500000)), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_documents_search ON documents USING gin (search)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE documents_fts USING fts5("
            " title, markdown, content='documents', content_rowid='pk', tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN"
            " INSERT INTO documents_fts(rowid, title, markdown) VALUES (new.pk, new.title, new.markdown); END"
        )
        op.execute(
            "CREATE TRIGGER documents_fts_delete AFTER DELETE ON documents BEGIN"
            " INSERT INTO documents_fts(documents_fts, rowid, title, markdown)"
            " VALUES ('delete', old.pk, old.title, old.markdown); END"
        )
        op.execute(
            "CREATE TRIGGER documents_fts_update AFTER UPDATE OF title, markdown ON documents BEGIN"
            " INSERT INTO documents_fts(documents_fts, rowid, title, markdown)"
            " VALUES ('delete', old.pk, old.title, old.markdown);"
            " INSERT INTO documents_fts(rowid, title, markdown) VALUES (new.pk, new.title, new.markdown); END"
        )

    op.create_table(
        "job_logs",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("crawl_jobs.id", ondelete="CASCADE"), nullable=False),
        # 10 debug, 20 info, 30 warn, 40 error: "level >= warn" is one comparison.
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_job_logs_job_id", "job_logs", ["job_id", "id"])

    op.create_table(
        "job_events",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("crawl_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"])

    # Per-host politeness shared by every worker process: a worker claims the next slot with
    # one statement (next_at = greatest(next_at, now()) + delay ... RETURNING).
    op.create_table(
        "host_slots",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("next_at", TIME, nullable=False),
    )
    op.create_table(
        "robots_cache",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False, server_default=""),
        sa.Column("fetched_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("robots_cache", "host_slots", "job_events", "job_logs"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS documents_fts")
    op.drop_table("documents")
    op.drop_table("crawl_urls")
    op.drop_table("crawl_jobs")
