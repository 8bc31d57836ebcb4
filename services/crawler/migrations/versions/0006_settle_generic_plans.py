"""crawl_settle() runs on generic plans; the URLs' (job, state) index leads with the state.

Planning each of crawl_settle()'s statements for its parameters (the crawler's sessions run with
plan_cache_mode=force_custom_plan) was about a quarter of PostgreSQL's CPU in a crawl: ~1 ms per
settle, including the foreign-key checks of every discovered URL. Every statement of the
function finds its rows by a key (the URLs' ids, (job, URL key), the job's id, the partial
indexes of queued URLs), so one plan per session serves any parameters, provided the plan is
made right while the tables are still young:

- `enable_seqscan = off` inside the function: a plan made when crawl_urls held a dozen rows
  would otherwise scan the table for the rest of the session;
- the (job_id, state, depth, id) index becomes (state, job_id, id): with job_id as its leading
  column, a lookup of one URL by (job_id, url_key) could pick it (its row estimate of the job's
  rows is as good as 1 in a young table) and walk every URL of the job; led by the state, it
  serves only queries that name a state (cancel, listing URLs by state), as before.

The full settle, in a transaction of its own statements, keeps planning each statement.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_crawl_urls_job_state_depth", table_name="crawl_urls")
    op.create_index("ix_crawl_urls_state_job", "crawl_urls", ["state", "job_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION crawl_settle SET plan_cache_mode = force_generic_plan")
        op.execute("ALTER FUNCTION crawl_settle SET enable_seqscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION crawl_settle RESET ALL")
    op.drop_index("ix_crawl_urls_state_job", table_name="crawl_urls")
    op.create_index("ix_crawl_urls_job_state_depth", "crawl_urls", ["job_id", "state", "depth", "id"])
