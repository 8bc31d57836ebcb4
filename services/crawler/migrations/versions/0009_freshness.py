"""Freshness: validators, versions, change labels and tombstones of documents.

- documents: `etag` and `last_modified` as served (sent back on the next crawl of the source),
  `links` (the canonical URLs the page links to, so a 304 is expanded as if it had been
  parsed), `version` (1, then one more per change) and `removed_at` (a tombstone);
- document_versions: the versions a change replaced (the newest QUAERO_DOCUMENT_VERSIONS kept);
- crawl_urls: what the crawl found of a page's document (`change`: new, changed, unchanged,
  removed) with the content hash it found and the one stored before (`previous_hash`);
- crawl_jobs: the counts of each change, and whether the source had documents when the job was
  created (`recrawl`: its pages are then looked up before they are fetched);
- document_removals: documents a completed crawl did not reach (those it answered 404/410 for
  are on their frontier rows);
- crawl_settle() (PostgreSQL) writes all of it: the document arrays gain the validators and the
  links, the outcome arrays the change and its hashes and the document of an unchanged page,
  the counters the changes; `p_keep` is the number of versions kept. A page found gone still
  goes to the full settle.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
TEXTS = sa.JSON().with_variant(sa.ARRAY(sa.Text), "postgresql")
CHANGES = ("changes_new", "changes_changed", "changes_unchanged", "changes_removed")

# As revision 0006 set them (see there why).
_SETTINGS = ("SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off")

_FUNCTION = r"""
CREATE FUNCTION crawl_settle(
    p_job_id text, p_source_id text, p_now timestamptz, p_cutoff timestamptz,
    d_ids text[], d_url_keys text[], d_urls text[], d_hosts text[], d_titles text[], d_markdowns text[],
    d_metadata text[], d_hashes text[], d_word_counts int[], d_etags text[], d_last_modifieds text[], d_links text[],
    p_keep int,
    o_ids bigint[], o_states text[], o_reasons text[], o_details text[], o_statuses int[], o_redirects text[],
    o_doc_keys text[], o_documents text[], o_outlinks text[], o_attempts int[], o_next timestamptz[],
    o_changes text[], o_content_hashes text[], o_previous_hashes text[],
    c_depths int[], c_attempts int[], c_hops int[], c_documents text[],
    n_keys text[], n_urls text[], n_hosts text[], n_depths int[], n_states text[], n_reasons text[], n_hops int[],
    n_froms text[],
    p_dt int, p_dc int, p_df int, p_dp int, p_ds int, p_dr int, p_dn int, p_dch int, p_du int, p_drm int,
    p_guard boolean, p_waiting int,
    l_levels int[], l_messages text[],
    OUT out_request_id text, OUT out_task_ids bigint[], OUT out_task_urls text[], OUT out_task_depths int[],
    OUT out_task_attempts int[], OUT out_task_hops int[], OUT out_task_documents text[],
    OUT out_known_keys text[], OUT out_known_depths int[])
LANGUAGE plpgsql AS $fn$
DECLARE
    v_as_read int;
    v_new_queued int := 0;
    v_new_skipped int := 0;
    v_nearer int := 0;
    v_raced int := 0;
    v_job record;
BEGIN
    -- 1. Documents and outcomes. The URLs' rows are locked first, in id order, as by every
    -- settle; each outcome is recorded only if its URL's row is still as the worker had it. A
    -- changed page's document keeps the version it replaces (the newest p_keep of them), then
    -- each page's document is inserted or updated (back from a removal, if it was). A page's
    -- links come as its canonical URLs joined by newlines, its outlinks as URL keys joined by
    -- commas. An unchanged page (o_documents) writes nothing of its document.
    PERFORM 1 FROM crawl_urls WHERE id = ANY(o_ids) ORDER BY id FOR UPDATE;
    WITH d AS (
        SELECT * FROM unnest(d_ids, d_url_keys, d_urls, d_hosts, d_titles, d_markdowns, d_metadata, d_hashes,
                             d_word_counts, d_etags, d_last_modifieds, d_links)
             AS d(id, url_key, url, host, title, markdown, metadata, content_hash, word_count, etag, last_modified,
                  links)
    ), was AS MATERIALIZED (
        SELECT s.id, s.version, s.content_hash, s.title, s.markdown, s.updated_at
        FROM d CROSS JOIN LATERAL (
            SELECT id, version, content_hash, title, markdown, updated_at FROM documents
            WHERE source_id = p_source_id AND url_key = d.url_key LIMIT 1) s
        WHERE s.content_hash <> d.content_hash AND p_keep > 0
    ), kept AS (
        INSERT INTO document_versions (document_id, version, content_hash, title, markdown, fetched_at, created_at)
        SELECT id, version, content_hash, title, markdown, updated_at, p_now FROM was
        ON CONFLICT DO NOTHING
    ), pruned AS (
        DELETE FROM document_versions v USING was WHERE v.document_id = was.id AND v.version <= was.version - p_keep
    ), docs AS (
        INSERT INTO documents (id, source_id, url_key, url, host, title, markdown, metadata, content_hash,
                               word_count, job_id, etag, last_modified, links, created_at, updated_at)
        SELECT d.id, p_source_id, d.url_key, d.url, d.host, d.title, d.markdown, d.metadata::jsonb, d.content_hash,
               d.word_count, p_job_id, d.etag, d.last_modified, string_to_array(d.links, E'\n'), p_now, p_now
        FROM d
        ON CONFLICT (source_id, url_key) DO UPDATE SET
            url = excluded.url, host = excluded.host, title = excluded.title, markdown = excluded.markdown,
            metadata = excluded.metadata, word_count = excluded.word_count, job_id = excluded.job_id,
            etag = excluded.etag, last_modified = excluded.last_modified, links = excluded.links, removed_at = NULL,
            version = documents.version + CASE WHEN documents.content_hash = excluded.content_hash THEN 0 ELSE 1 END,
            updated_at = CASE WHEN documents.content_hash = excluded.content_hash
                              THEN documents.updated_at ELSE excluded.updated_at END,
            content_hash = excluded.content_hash
        RETURNING id, url_key
    )
    UPDATE crawl_urls u SET state = v.state, reason = v.reason, detail = v.detail, http_status = v.http_status,
        redirected_to = v.redirected_to,
        document_id = coalesce((SELECT docs.id FROM docs WHERE docs.url_key = v.doc_key), v.document_id,
                               u.document_id),
        outlinks = string_to_array(v.outlinks, ','), attempts = v.attempts, next_attempt_at = v.next_attempt_at,
        change = v.change, content_hash = v.content_hash, previous_hash = v.previous_hash,
        published_at = NULL, updated_at = p_now
    FROM unnest(o_ids, o_states, o_reasons, o_details, o_statuses, o_redirects, o_doc_keys, o_documents, o_outlinks,
                o_attempts, o_next, o_changes, o_content_hashes, o_previous_hashes,
                c_depths, c_attempts, c_hops, c_documents)
         AS v(id, state, reason, detail, http_status, redirected_to, doc_key, document_id, outlinks, attempts,
              next_attempt_at, change, content_hash, previous_hash, was_depth, was_attempts, was_hops, was_document)
    -- The check is one opaque condition (`IS TRUE`): given `job_id = ... AND state = 'queued'`,
    -- a planner that expects one row of a young table scans the job's queued URLs for them.
    WHERE u.id = v.id
      AND (u.job_id = p_job_id AND u.state = 'queued' AND u.depth = v.was_depth AND u.attempts = v.was_attempts
           AND u.redirect_hops = v.was_hops AND u.document_id IS NOT DISTINCT FROM v.was_document) IS TRUE;
    GET DIAGNOSTICS v_as_read = ROW_COUNT;
    IF v_as_read <> cardinality(o_ids) THEN
        RAISE EXCEPTION 'a URL''s row changed since its task was leased or read' USING ERRCODE = 'QS001';
    END IF;

    -- 2. Discovered URLs: the known ones read on the snapshot (never inserted: see the full
    -- settle's discover statement), the new ones inserted in key order.
    IF cardinality(n_keys) > 0 THEN
        WITH known AS MATERIALIZED (
            SELECT c.url_key, c.depth FROM unnest(n_keys) AS k(url_key)
            CROSS JOIN LATERAL (
                SELECT url_key, depth FROM crawl_urls WHERE job_id = p_job_id AND url_key = k.url_key LIMIT 1) c
        ), ins AS (
            INSERT INTO crawl_urls (job_id, url_key, url, host, depth, state, reason, redirect_hops, discovered_from,
                                    created_at, updated_at)
            SELECT p_job_id, t.url_key, t.url, t.host, t.depth, t.state, t.reason, t.hops, t.discovered_from,
                   p_now, p_now
            FROM unnest(n_keys, n_urls, n_hosts, n_depths, n_states, n_reasons, n_hops, n_froms)
                 WITH ORDINALITY AS t(url_key, url, host, depth, state, reason, hops, discovered_from, n)
            WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.url_key = t.url_key)
            ORDER BY t.n
            ON CONFLICT (job_id, url_key) DO NOTHING
            RETURNING url_key, state
        )
        SELECT count(*) FILTER (WHERE ins.state = 'queued'),
               count(*) FILTER (WHERE ins.state <> 'queued'),
               count(*) FILTER (WHERE known.depth > t.depth),
               count(*) FILTER (WHERE ins.url_key IS NULL AND known.url_key IS NULL),
               array_agg(t.url_key), array_agg(coalesce(known.depth, t.depth))
        INTO v_new_queued, v_new_skipped, v_nearer, v_raced, out_known_keys, out_known_depths
        FROM unnest(n_keys, n_depths) AS t(url_key, depth)
        LEFT JOIN ins ON ins.url_key = t.url_key
        LEFT JOIN known ON known.url_key = t.url_key;
        IF v_nearer > 0 OR v_raced > 0 THEN
            RAISE EXCEPTION 'a URL was found nearer a seed, or inserted meanwhile' USING ERRCODE = 'QS001';
        END IF;
    END IF;

    -- 3. Counters.
    UPDATE crawl_jobs SET total_urls = total_urls + p_dt + v_new_queued, completed_urls = completed_urls + p_dc,
        failed_urls = failed_urls + p_df, pending_urls = pending_urls + p_dp + v_new_queued,
        skipped_urls = skipped_urls + p_ds + v_new_skipped, result_count = result_count + p_dr,
        changes_new = changes_new + p_dn, changes_changed = changes_changed + p_dch,
        changes_unchanged = changes_unchanged + p_du, changes_removed = changes_removed + p_drm, updated_at = p_now,
        progress_event_at = CASE WHEN progress_event_at IS NULL OR progress_event_at < p_cutoff
                                 THEN p_now ELSE progress_event_at END
    WHERE id = p_job_id AND (NOT p_guard OR result_count + p_dr <= max_pages)
    RETURNING status, pending_urls, result_count, max_pages, concurrency, request_id, progress_event_at INTO v_job;
    IF NOT FOUND OR v_job.status = 'cancelled' OR (v_job.status = 'running' AND (
            v_job.result_count >= v_job.max_pages OR v_job.pending_urls <= 0 OR v_job.progress_event_at = p_now)) THEN
        RAISE EXCEPTION 'the job needs the full settle' USING ERRCODE = 'QS001';
    END IF;
    out_request_id := v_job.request_id;

    -- 4. The next tasks (the same statement as the full settle's dispatch).
    IF v_job.status = 'running' THEN
        WITH due AS MATERIALIZED (
            SELECT id FROM crawl_urls
            WHERE job_id = p_job_id AND state = 'queued' AND published_at IS NULL
              AND (next_attempt_at IS NULL OR next_attempt_at <= p_now)
            ORDER BY depth, id
            LIMIT greatest(0, v_job.concurrency + least(p_waiting, v_job.concurrency) - (
                SELECT count(*) FROM crawl_urls
                WHERE job_id = p_job_id AND state = 'queued' AND published_at IS NOT NULL))
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE crawl_urls u SET published_at = p_now, publications = u.publications + 1
            FROM due WHERE u.id = due.id
            RETURNING u.id, u.url, u.depth, u.attempts, u.redirect_hops, u.document_id
        )
        SELECT array_agg(id), array_agg(url), array_agg(depth), array_agg(attempts), array_agg(redirect_hops),
               array_agg(document_id)
        INTO out_task_ids, out_task_urls, out_task_depths, out_task_attempts, out_task_hops, out_task_documents
        FROM leased;
    END IF;

    -- 5. Logs.
    IF cardinality(l_levels) > 0 THEN
        INSERT INTO job_logs (job_id, level, message, created_at)
        SELECT p_job_id, l.level, l.message, p_now FROM unnest(l_levels, l_messages) AS l(level, message);
    END IF;
END
$fn$
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP FUNCTION crawl_settle")  # the one of revision 0007
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("etag", sa.Text, nullable=True))
        batch.add_column(sa.Column("last_modified", sa.Text, nullable=True))
        batch.add_column(sa.Column("links", TEXTS, nullable=True))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("removed_at", TIME, nullable=True))
    with op.batch_alter_table("crawl_urls") as batch:
        batch.add_column(sa.Column("change", sa.String(16), nullable=True))
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("crawl_jobs") as batch:
        batch.add_column(sa.Column("recrawl", sa.Boolean, nullable=False, server_default=sa.false()))
        for name in CHANGES:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "document_versions",
        sa.Column("document_id", sa.String(36), sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("markdown", sa.Text, nullable=False, server_default=""),
        sa.Column("fetched_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("document_id", "version", name="pk_document_versions"),
    )
    op.create_table(
        "document_removals",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("crawl_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("removed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "document_id", name="pk_document_removals"),
    )
    # A job's changes are listed by its frontier rows that carry one.
    op.create_index(
        "ix_crawl_urls_changes",
        "crawl_urls",
        ["job_id", "id"],
        postgresql_where=sa.text("change IS NOT NULL"),
        sqlite_where=sa.text("change IS NOT NULL"),
    )
    if postgres:
        op.execute(_FUNCTION)
        for setting in _SETTINGS:
            op.execute(f"ALTER FUNCTION crawl_settle {setting}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP FUNCTION crawl_settle")
    op.drop_index("ix_crawl_urls_changes", table_name="crawl_urls")
    op.drop_table("document_removals")
    op.drop_table("document_versions")
    with op.batch_alter_table("crawl_jobs") as batch:
        for name in ("recrawl", *CHANGES):
            batch.drop_column(name)
    with op.batch_alter_table("crawl_urls") as batch:
        for name in ("previous_hash", "content_hash", "change"):
            batch.drop_column(name)
    with op.batch_alter_table("documents") as batch:
        for name in ("removed_at", "version", "links", "last_modified", "etag"):
            batch.drop_column(name)
    # Revision 0007's function comes back, with its settings.
    if postgres:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.spec_from_file_location("revision_0007", Path(__file__).with_name("0007_outlinks.py"))
        assert spec is not None and spec.loader is not None
        previous = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(previous)
        op.execute(previous._FUNCTION)
        for setting in _SETTINGS:
            op.execute(f"ALTER FUNCTION crawl_settle {setting}")
