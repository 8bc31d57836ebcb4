"""Every fetched URL keeps its outlinks; crawl_settle() records them.

A URL found nearer a seed than recorded used to be reopened: queued again when it had been
skipped for its depth, or fetched with its links cut by max_depth. Only the URL itself moved,
so its descendants kept the depths of the longer path: a page two links below it, skipped for
depth, stayed skipped although its true depth was within reach. Now each fetched URL keeps its
outlinks (`outlinks`: the URL keys of every link of its page, or of a redirect's target), and a
depth decrease is carried down them to every descendant it lowers (the full settle: one
statement per level); nothing fetched is fetched again for it, so `links_cut` goes.

crawl_settle() takes each outcome's outlinks (`o_outlinks`: the keys joined by commas, NULL for
none) where it took `o_cuts`; otherwise it is the function of revision 0005, with 0006's plan
settings. It still leaves a URL found nearer a seed to the full settle.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_SIGNATURE = (
    "crawl_settle(text, text, timestamptz, timestamptz, text[], text[],"
    " text[], text[], text[], text[], text[], text[], int[], bigint[], text[], text[], text[], int[], text[],"
    " text[], boolean[], int[], timestamptz[], int[], int[], int[], text[],"
    " text[], text[], text[], int[], text[], text[], int[], text[],"
    " int, int, int, int, int, int, boolean, int, int[], text[])"
)
_SIGNATURE = _OLD_SIGNATURE.replace("text[], boolean[], int[], timestamptz[]", "text[], text[], int[], timestamptz[]")
# As revision 0006 set them (see there why).
_SETTINGS = ("SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off")

_FUNCTION = r"""
CREATE FUNCTION crawl_settle(
    p_job_id text, p_source_id text, p_now timestamptz, p_cutoff timestamptz,
    d_ids text[], d_url_keys text[], d_urls text[], d_hosts text[], d_titles text[], d_markdowns text[],
    d_metadata text[], d_hashes text[], d_word_counts int[],
    o_ids bigint[], o_states text[], o_reasons text[], o_details text[], o_statuses int[], o_redirects text[],
    o_doc_keys text[], o_outlinks text[], o_attempts int[], o_next timestamptz[],
    c_depths int[], c_attempts int[], c_hops int[], c_documents text[],
    n_keys text[], n_urls text[], n_hosts text[], n_depths int[], n_states text[], n_reasons text[], n_hops int[],
    n_froms text[],
    p_dt int, p_dc int, p_df int, p_dp int, p_ds int, p_dr int, p_guard boolean, p_waiting int,
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
    -- 1. Documents and outcomes (a fetched page's outlinks come as its URL keys joined by
    -- commas). The URLs' rows are locked first, in id order, as by every settle; each outcome
    -- is recorded only if its URL's row is still as the worker had it.
    PERFORM 1 FROM crawl_urls WHERE id = ANY(o_ids) ORDER BY id FOR UPDATE;
    WITH docs AS (
        INSERT INTO documents (id, source_id, url_key, url, host, title, markdown, metadata, content_hash,
                               word_count, job_id, created_at, updated_at)
        SELECT d.id, p_source_id, d.url_key, d.url, d.host, d.title, d.markdown, d.metadata::jsonb, d.content_hash,
               d.word_count, p_job_id, p_now, p_now
        FROM unnest(d_ids, d_url_keys, d_urls, d_hosts, d_titles, d_markdowns, d_metadata, d_hashes, d_word_counts)
             AS d(id, url_key, url, host, title, markdown, metadata, content_hash, word_count)
        ON CONFLICT (source_id, url_key) DO UPDATE SET
            url = excluded.url, host = excluded.host, title = excluded.title, markdown = excluded.markdown,
            metadata = excluded.metadata, word_count = excluded.word_count, job_id = excluded.job_id,
            updated_at = CASE WHEN documents.content_hash = excluded.content_hash
                              THEN documents.updated_at ELSE excluded.updated_at END,
            content_hash = excluded.content_hash
        RETURNING id, url_key
    )
    UPDATE crawl_urls u SET state = v.state, reason = v.reason, detail = v.detail, http_status = v.http_status,
        redirected_to = v.redirected_to,
        document_id = coalesce((SELECT docs.id FROM docs WHERE docs.url_key = v.doc_key), u.document_id),
        outlinks = string_to_array(v.outlinks, ','), attempts = v.attempts, next_attempt_at = v.next_attempt_at,
        published_at = NULL, updated_at = p_now
    FROM unnest(o_ids, o_states, o_reasons, o_details, o_statuses, o_redirects, o_doc_keys, o_outlinks, o_attempts,
                o_next, c_depths, c_attempts, c_hops, c_documents)
         AS v(id, state, reason, detail, http_status, redirected_to, doc_key, outlinks, attempts, next_attempt_at,
              was_depth, was_attempts, was_hops, was_document)
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
        skipped_urls = skipped_urls + p_ds + v_new_skipped, result_count = result_count + p_dr, updated_at = p_now,
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
        op.execute(f"DROP FUNCTION {_OLD_SIGNATURE}")
    with op.batch_alter_table("crawl_urls") as batch:
        batch.add_column(sa.Column("outlinks", sa.JSON().with_variant(sa.ARRAY(sa.Text), "postgresql"), nullable=True))
        batch.drop_column("links_cut")
    if postgres:
        op.execute(_FUNCTION)
        for setting in _SETTINGS:
            op.execute(f"ALTER FUNCTION {_SIGNATURE} {setting}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(f"DROP FUNCTION {_SIGNATURE}")
    with op.batch_alter_table("crawl_urls") as batch:
        batch.add_column(sa.Column("links_cut", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.drop_column("outlinks")
    # Revision 0005's function comes back, with its settings from 0006.
    if postgres:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.spec_from_file_location(
            "revision_0005", Path(__file__).with_name("0005_settle_function.py")
        )
        assert spec is not None and spec.loader is not None
        previous = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(previous)
        op.execute(previous._FUNCTION)
        for setting in _SETTINGS:
            op.execute(f"ALTER FUNCTION {_OLD_SIGNATURE} {setting}")
