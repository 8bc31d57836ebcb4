"""crawl_settle(): a worker's usual settle in one round trip (PostgreSQL only).

A settle is seven statements in a transaction (claim, documents, outcomes, discovered URLs,
counters, dispatch, commit and its begin): each a round trip, each a wake-up of the worker and
of PostgreSQL, about a third of the settle's cost. This function runs them as one statement on
its own (autocommit). The worker works out every outcome as in the full settle, from the URLs'
rows as their tasks carried them when leased (or as it read them, without a lock, for tasks that
carry none), and the function:

1. locks the URLs' rows (in id order), upserts the documents and records the outcomes (page
   outcomes take their document's id by URL key), each only if its URL's row is still as the
   worker had it (`queued`, same depth, attempts, redirect hops, document): if one is not,
   nothing is kept;
2. inserts the discovered URLs that are not yet known;
3. updates the job's counters (`RETURNING` them, under the job's row lock);
4. leases the job's next tasks (each statement of a function sees what committed before it, so
   the free slots are counted after the lock, as in the full settle);
5. appends the logs.

Whatever needs more than that raises SQLSTATE QS001 before the function returns, which undoes
everything it did, and the worker runs the full settle in a transaction instead: a row no
longer as the worker had it (a duplicate delivery, say), a URL found nearer a seed than
recorded, a URL inserted by a concurrent settle after this one's snapshot, the page budget
reached or overflowed, nothing left pending (the job completes), a progress event due, a
cancelled job. Those are a few percent of the settles.

Every statement runs with the session's plan_cache_mode (force_custom_plan for the crawler):
measured with generic plans (plan_cache_mode=auto, even with enable_seqscan off), PostgreSQL's
CPU per page doubled, the plans having been made while the tables were young.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = r"""
CREATE FUNCTION crawl_settle(
    p_job_id text, p_source_id text, p_now timestamptz, p_cutoff timestamptz,
    d_ids text[], d_url_keys text[], d_urls text[], d_hosts text[], d_titles text[], d_markdowns text[],
    d_metadata text[], d_hashes text[], d_word_counts int[],
    o_ids bigint[], o_states text[], o_reasons text[], o_details text[], o_statuses int[], o_redirects text[],
    o_doc_keys text[], o_cuts boolean[], o_attempts int[], o_next timestamptz[],
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
    -- 1. Documents and outcomes. The URLs' rows are locked first, in id order, as by every
    -- settle; each outcome is recorded only if its URL's row is still as the worker had it.
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
        links_cut = v.links_cut, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
        published_at = NULL, updated_at = p_now
    FROM unnest(o_ids, o_states, o_reasons, o_details, o_statuses, o_redirects, o_doc_keys, o_cuts, o_attempts, o_next,
                c_depths, c_attempts, c_hops, c_documents)
         AS v(id, state, reason, detail, http_status, redirected_to, doc_key, links_cut, attempts, next_attempt_at,
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

_SIGNATURE = (
    "crawl_settle(text, text, timestamptz, timestamptz, text[], text[],"
    " text[], text[], text[], text[], text[], text[], int[], bigint[], text[], text[], text[], int[], text[],"
    " text[], boolean[], int[], timestamptz[], int[], int[], int[], text[],"
    " text[], text[], text[], int[], text[], text[], int[], text[],"
    " int, int, int, int, int, int, boolean, int, int[], text[])"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {_SIGNATURE}")
