"""The fast settle (crawl_settle(), PostgreSQL): the same rows as the full settle, and the full
settle whenever the URLs' rows it worked from (read, or carried by the tasks) changed before it
wrote."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import text

from libs.db import Database, PgStatement
from services.crawler import queue
from services.crawler import settle as settle_module
from services.crawler.frontier import canonical_url
from services.crawler.lookups import Lookups
from services.crawler.parse import ParsedPage
from services.crawler.settle import (
    FAILED,
    PAGE,
    REDIRECT,
    RETRY,
    SKIPPED,
    UNCHANGED,
    JobContext,
    Outcome,
    Settled,
    Settler,
    job_context,
)
from services.crawler.store import CrawlStore, Task
from services.crawler.worker import leased_row
from tests.support.crawler import crawler_database, job_spec
from tests.support.services import common_settings

SITE = "http://docs.test"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*")


def page_outcome(url_id: int, url: str, links: list[str], words: str = "") -> Outcome:
    links = [canonical_url(SITE + link) or "" for link in links]
    markdown = f"# {url}\n\nA page about {url}. {words}".rstrip()
    page = ParsedPage(
        title=f"Title of {url}",
        description="",
        language="en",
        canonical="",
        links=links,
        markdown=markdown,
        content_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        word_count=len(markdown.split()),
    )
    return Outcome(url_id, PAGE, url=url, http_status=200, page=page, links=links)


async def frontier_ids(db: Database, job_id: str) -> dict[str, int]:
    async with db.read() as session:
        rows = await session.execute(text("SELECT id, url FROM crawl_urls WHERE job_id = :j"), {"j": job_id})
        return {r.url.removeprefix(SITE): r.id for r in rows}


async def snapshot(db: Database, job_id: str) -> dict[str, Any]:
    """What a job's settles wrote, without its ids and times."""
    async with db.read() as session:
        urls = await session.execute(
            text(
                "SELECT url, state, reason, detail, depth, http_status, redirected_to, document_id IS NOT NULL AS doc,"
                " outlinks, attempts, redirect_hops, discovered_from, next_attempt_at IS NOT NULL AS due,"
                " published_at IS NOT NULL AS leased, leased_by, change, content_hash, previous_hash"
                " FROM crawl_urls WHERE job_id = :j ORDER BY url"
            ),
            {"j": job_id},
        )
        documents = await session.execute(
            text(
                "SELECT url, title, word_count, content_hash, metadata->>'depth', version, removed_at IS NOT NULL,"
                " etag, links, job_id = :j FROM documents"
                " WHERE source_id = (SELECT source_id FROM crawl_jobs WHERE id = :j)"
            ),
            {"j": job_id},
        )
        versions = await session.execute(
            text(
                "SELECT d.url, v.version, v.content_hash, v.title FROM document_versions v"
                " JOIN documents d ON d.id = v.document_id"
                " WHERE d.source_id = (SELECT source_id FROM crawl_jobs WHERE id = :j)"
            ),
            {"j": job_id},
        )
        removals = await session.execute(
            text("SELECT url, content_hash FROM document_removals WHERE job_id = :j"), {"j": job_id}
        )
        job = await session.execute(
            text(
                "SELECT status, total_urls, completed_urls, failed_urls, pending_urls, skipped_urls, result_count,"
                " changes_new, changes_changed, changes_unchanged, changes_removed FROM crawl_jobs WHERE id = :j"
            ),
            {"j": job_id},
        )
        logs = await session.execute(text("SELECT level, message FROM job_logs WHERE job_id = :j"), {"j": job_id})
        return {
            "urls": [tuple(r) for r in urls],
            "documents": sorted(tuple(r) for r in documents),
            "versions": sorted(tuple(r) for r in versions),
            "removals": sorted(tuple(r) for r in removals),
            "job": tuple(job.one()),
            # Without the times they name: two settles a moment apart may fall in different seconds.
            "logs": sorted((level, _TIME.sub("<time>", message)) for level, message in logs),
        }


async def seed_job(db: Database) -> tuple[JobContext, Task]:
    """A job of docs.test to depth 1, and its seed's task."""
    store = CrawlStore(db)
    created = await store.create_jobs([job_spec([SITE + "/"], config={"max_depth": 1})])
    (job,) = created.jobs
    (seed,) = created.tasks
    return job_context(await store.get_job(job.id)), seed


def carrying(outcome: Outcome, task: Task | None) -> Outcome:
    """The outcome with the URL's row as `task` carries it (what a worker does with a UrlTask)."""
    if task is not None:
        outcome.row = leased_row(queue.decode(queue.encode(task).body))
        assert outcome.row is not None
    return outcome


async def crawl_by_hand(
    db: Database, settler: Settler, source_id: str, *, carry: bool = False
) -> tuple[dict[str, Any], list[Settled]]:
    """A job of docs.test settled in three batches the way workers would: the seed page, then
    a page, a redirect, a retry and a failure, then a duplicate delivery of the page. With
    `carry`, each outcome has its URL's row from its task, else the settle reads it."""
    store = CrawlStore(db)
    created = await store.create_jobs(
        [job_spec([SITE + "/"], source_id=source_id, config={"max_depth": 2, "exclude_patterns": ["/private/"]})]
    )
    (job,) = created.jobs
    ctx = job_context(await store.get_job(job.id))
    (seed,) = created.tasks
    home = page_outcome(seed.url_id, SITE + "/", ["/a", "/b", "/c", "/d", "/private/x", "/"])
    results = [await settler.settle(ctx, [carrying(home, seed if carry else None)], known={})]
    leased = {t.url.removeprefix(SITE): t for t in results[0].tasks}
    ids = await frontier_ids(db, job.id)
    assert {path: t.url_id for path, t in leased.items()} == {p: ids[p] for p in ("/a", "/b", "/c", "/d")}
    batch = [
        page_outcome(ids["/a"], SITE + "/a", ["/a/1", "/a/2", "/b"]),
        Outcome(ids["/b"], REDIRECT, url=SITE + "/b", http_status=301, location=canonical_url(SITE + "/b/")),
        Outcome(ids["/c"], RETRY, url=SITE + "/c", http_status=503, reason="http_error", detail="503"),
        Outcome(ids["/d"], FAILED, url=SITE + "/d", http_status=404, reason="http_error", detail="not found"),
    ]
    batch = [carrying(o, leased[o.url.removeprefix(SITE)] if carry else None) for o in batch]
    results.append(await settler.settle(ctx, batch, known={}))
    again = page_outcome(ids["/a"], SITE + "/a", ["/a/1"])
    results.append(await settler.settle(ctx, [carrying(again, leased["/a"] if carry else None)], known={}))
    return await snapshot(db, job.id), results


def leased(settled: Settled) -> list[tuple[Any, ...]]:
    """The tasks a settle leased, without the ids of the job, the URLs and the stored documents."""
    return sorted(astuple(replace(t, stored=t.stored and t.stored._replace(id="")))[2:] for t in settled.tasks)


async def assert_carried_as_stored(lookups: Lookups, ctx: JobContext, tasks: list[Task]) -> None:
    """Every task of a recrawl carries its page's document as a worker would look it up (and
    through the queue as well), links included; a first crawl's tasks carry nothing."""
    for task in tasks:
        assert queue.carried(queue.decode(queue.encode(task).body)) == (task.stored_known, task.stored)
        assert task.stored_known == ctx.recrawl
        if not ctx.recrawl:
            assert task.stored is None
            continue
        stored = await lookups.stored(ctx.source_id, task.url)
        links = await lookups.links(stored.id) if stored is not None else None
        assert task.stored == (stored and stored._replace(links=links)), task.url


@pytest.mark.parametrize("carry", [False, True], ids=["rows read", "rows carried by the tasks"])
async def test_the_fast_and_the_full_settle_write_the_same_rows(pg_url: str, tmp_path: Path, carry: bool) -> None:
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        # One publisher for both: the leases they take must name it alike.
        fast = Settler(db, progress_interval=3600, publisher="worker-1")
        full = Settler(db, progress_interval=3600, fast=False, publisher="worker-1")
        by_fast, fast_results = await crawl_by_hand(db, fast, "fast", carry=carry)
        by_full, full_results = await crawl_by_hand(db, full, "full")

    # The seed's settle is a full one (the job's first progress event is due), the next one
    # fast. The duplicate: its URL read as settled, nothing is written; its row carried as
    # leased, the function finds the row changed, and the full settle drops it.
    assert (fast.fast_settles, fast.full_settles) == ((1, 2) if carry else (2, 1))
    assert (full.fast_settles, full.full_settles) == (0, 3)
    assert by_fast == by_full
    assert [leased(r) for r in fast_results] == [leased(r) for r in full_results]
    assert [r.known for r in fast_results] == [r.known for r in full_results]
    urls = {url.removeprefix(SITE): (state, reason) for url, state, reason, *_ in by_fast["urls"]}
    assert urls == {
        "/": ("done", ""),
        "/a": ("done", ""),
        "/a/1": ("queued", ""),
        "/a/2": ("queued", ""),
        "/b": ("done", ""),
        "/b/": ("queued", ""),
        "/c": ("queued", "http_error"),
        "/d": ("failed", "http_error"),
        "/private/x": ("skipped", "pattern"),
    }
    assert len(by_fast["documents"]) == 2


async def recrawl_by_hand(db: Database, settler: Settler, source_id: str) -> tuple[dict[str, Any], int]:
    """A source crawled, then recrawled the way workers would: the seed answers 304 (its links
    come from its document), then /a is unchanged and /b changed while /c is still to come, then
    /c is found gone. Returns the recrawl's rows and how many of its settles were fast."""
    store = CrawlStore(db)
    lookups = Lookups(db)
    for recrawl in (False, True):
        created = await store.create_jobs([job_spec([SITE + "/"], source_id=source_id, config={"max_depth": 1})])
        ctx = job_context(await store.get_job(created.jobs[0].id))
        assert ctx.recrawl == recrawl
        fast_before = settler.fast_settles
        (seed,) = created.tasks
        if recrawl:
            stored = await lookups.stored(source_id, seed.url)
            assert stored is not None
            links = await lookups.links(stored.id)
            home = Outcome(seed.url_id, UNCHANGED, url=seed.url, http_status=304, links=links or [], stored=stored)
        else:
            home = page_outcome(seed.url_id, SITE + "/", ["/a", "/b", "/c"])
        leased_now = {t.url: t for t in (await settler.settle(ctx, [home], known={})).tasks}
        batch = []
        for path, words in (("/a", "same"), ("/b", "first" if not recrawl else "second")):
            task = leased_now[SITE + path]
            outcome = page_outcome(task.url_id, task.url, [], words=words)
            outcome.stored = await lookups.stored(source_id, task.url) if recrawl else None
            assert outcome.page is not None
            if outcome.stored is not None and outcome.stored.content_hash == outcome.page.content_hash:
                outcome.kind = UNCHANGED
            batch.append(carrying(outcome, task))
        await settler.settle(ctx, batch, known={})
        task = leased_now[SITE + "/c"]
        if recrawl:
            gone = Outcome(task.url_id, FAILED, url=task.url, http_status=404, reason="http_status", detail="HTTP 404")
            gone.stored = await lookups.stored(source_id, task.url)
        else:
            gone = page_outcome(task.url_id, task.url, [])
        await settler.settle(ctx, [carrying(gone, task)], known={})
    return await snapshot(db, ctx.id), settler.fast_settles - fast_before


async def test_a_recrawl_settles_the_same_rows_the_fast_way_as_the_full_way(pg_url: str, tmp_path: Path) -> None:
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        by_fast, fast_settles = await recrawl_by_hand(db, Settler(db, progress_interval=3600), "fast")
        by_full, _ = await recrawl_by_hand(db, Settler(db, progress_interval=3600, fast=False), "full")

    # The seed's settle is a full one (the job's first progress event is due); the unchanged and
    # the changed page go the fast way; the page found gone goes the full way (a tombstone).
    assert fast_settles == 1
    assert by_fast == by_full
    urls = {row[0].removeprefix(SITE): row[15] for row in by_fast["urls"]}
    assert urls == {"/": "unchanged", "/a": "unchanged", "/b": "changed", "/c": "removed"}
    assert by_fast["job"][-4:] == (0, 1, 2, 1)  # new, changed, unchanged, removed
    assert [v[:2] for v in by_fast["versions"]] == [(SITE + "/b", 1)]


@pytest.mark.parametrize("carry", [False, True], ids=["rows read", "rows carried by the tasks"])
async def test_rows_changed_after_the_read_make_it_a_full_settle(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, carry: bool
) -> None:
    """Another worker settles the same URL (a duplicate delivery) after the fast settle read it
    (or its task was leased) and before the function writes: the function writes nothing, and
    the full settle finds the URL settled."""
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        settler = Settler(db, progress_interval=3600)
        other = Settler(db, fast=False)
        ctx, seed = await seed_job(db)
        settled = await settler.settle(ctx, [page_outcome(seed.url_id, SITE + "/", ["/a", "/b", "/c"])], known={})
        (task,) = [t for t in settled.tasks if t.url == SITE + "/a"]
        outcome = carrying(page_outcome(task.url_id, SITE + "/a", []), task if carry else None)
        function = settle_module._PG_SETTLE

        class SettledMeanwhile:
            async def fetch_on(self, connection: Any, params: dict[str, Any]) -> list[Any]:
                await other.settle(ctx, [outcome], known={})  # on another connection of the pool
                return await function.fetch_on(connection, params)

        monkeypatch.setattr(settle_module, "_PG_SETTLE", SettledMeanwhile())
        before = (settler.fast_settles, settler.full_settles)
        settled = await settler.settle(ctx, [outcome], known={})
        after = (settler.fast_settles, settler.full_settles)
        state = await snapshot(db, ctx.id)

    assert after == (before[0], before[1] + 1)
    assert settled.tasks == []
    assert [u[1] for u in state["urls"] if u[0] == SITE + "/a"] == ["done"]
    assert sorted(d[0] for d in state["documents"]) == [SITE + "/", SITE + "/a"]
    assert state["job"][2] == 2  # completed_urls: the seed and /a, once


async def test_without_the_function_a_worker_settles_the_full_way(pg_url: str, tmp_path: Path) -> None:
    """A worker of this release on a database not migrated yet: no crawl_settle(), full settles."""
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        async with db.session() as session:
            await session.execute(text("DROP FUNCTION crawl_settle"))
        settler = Settler(db, progress_interval=3600)
        ctx, seed = await seed_job(db)
        home = carrying(page_outcome(seed.url_id, SITE + "/", ["/a", "/b"]), seed)
        settled = await settler.settle(ctx, [home], known={})
        (task, _) = sorted(settled.tasks, key=lambda t: t.url)
        await settler.settle(ctx, [carrying(page_outcome(task.url_id, task.url, []), task)], known={})
        state = await snapshot(db, ctx.id)

    assert not settler.fast
    assert (settler.fast_settles, settler.full_settles) == (0, 2)
    assert sorted(d[0] for d in state["documents"]) == [SITE + "/", SITE + "/a"]
    assert state["job"][1:5] == (3, 2, 0, 1)  # total, completed, failed, pending


async def test_an_error_in_the_function_leaves_the_batch_to_the_full_settle(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        monkeypatch.setattr(settle_module, "_PG_SETTLE", PgStatement("SELECT 1 / 0"))
        settler = Settler(db, progress_interval=3600)
        ctx, seed = await seed_job(db)
        settled = await settler.settle(ctx, [carrying(page_outcome(seed.url_id, SITE + "/", ["/a"]), seed)], known={})
        state = await snapshot(db, ctx.id)

    assert (settler.fast_settles, settler.full_settles) == (0, 1)
    assert settler.fast  # a bad call is not a missing function: the next batch tries again
    assert [t.url for t in settled.tasks] == [SITE + "/a"]
    assert [d[0] for d in state["documents"]] == [SITE + "/"]


async def test_plans_made_while_the_tables_are_young_stay_key_lookups_as_they_grow(pg_url: str, tmp_path: Path) -> None:
    """crawl_settle() keeps one plan per statement for its session (migration 0006), made on
    its first calls, when crawl_urls holds a handful of rows. Thousands of rows later, those
    plans still find every row by a key: no sequential scan, and the lookup of a URL by
    (job, URL key) on the unique index, not on an index that walks the job's URLs."""
    async with crawler_database(common_settings(pg_url, tmp_path / "data"), pool_size=1) as db:
        settler = Settler(db, progress_interval=3600)
        ctx, seed = await seed_job(db)
        links = [f"/{i}" for i in range(20)]
        settled = await settler.settle(ctx, [carrying(page_outcome(seed.url_id, SITE + "/", links), seed)], known={})
        for task in settled.tasks[:5]:  # fast settles: the plans are made here
            outcome = carrying(page_outcome(task.url_id, task.url, [f"{task.url[len(SITE) :]}/x"]), task)
            await settler.settle(ctx, [outcome], known={})
        other, _ = await seed_job(db)
        async with db.session() as session:  # the table grows: 20,000 URLs of another job and of this one
            await session.execute(
                text(
                    "INSERT INTO crawl_urls (job_id, url_key, url, host, depth, state, created_at, updated_at)"
                    " SELECT CASE WHEN n % 10 = 0 THEN :job ELSE :other END, md5(n::text), 'http://big.test/' || n,"
                    " 'big.test', 1, 'queued', now(), now() FROM generate_series(1, 20000) AS n"
                ),
                {"job": ctx.id, "other": other.id},
            )
        plans: list[str] = []
        async with db.autocommit() as connection:  # the pool's one connection: the plans made above
            connection.add_log_listener(lambda _conn, message: plans.append(message.message))
            try:
                await connection.execute("LOAD 'auto_explain'")
            except asyncpg.InsufficientPrivilegeError:
                pytest.skip("loading auto_explain needs a PostgreSQL superuser")
            for setting in (
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_level = 'notice'",
            ):
                await connection.execute(setting)
        (task,) = settled.tasks[5:6]
        outcome = carrying(page_outcome(task.url_id, task.url, ["/", "/1", "/new"]), task)
        await settler.settle(ctx, [outcome], known={})

    assert (settler.fast_settles, settler.full_settles) == (6, 1)
    inside = [p for p in plans if "crawl_settle" not in p.split("\n", 2)[1]]  # the function's statements
    assert len(inside) >= 5
    assert not [p for p in inside if "Seq Scan on crawl_urls" in p or "Seq Scan on documents" in p]
    (lookup,) = [p for p in inside if "WITH known" in p]
    assert "uq_crawl_urls_job_url" in lookup
    assert "ix_crawl_urls_state_job" not in lookup


# ------------------------------------------------------------------------------ property

PATHS = [f"/p{i}" for i in range(12)]


@dataclass(frozen=True)
class Drawn:
    """A random outcome for whichever leased URL `pick` lands on (modulo the URLs leased so far):
    a page (one of three contents, linking to `links`; on a recrawl, answered 304 when
    `not_modified`), a redirect to `target`, a retry, a failure or a skip; `carry`: whether its
    task carries the URL's row."""

    pick: int
    # A URL settled already (a duplicate delivery), else one still leased.
    again: bool
    kind: str
    links: tuple[str, ...]
    target: str
    carry: bool
    content: int
    not_modified: bool

    async def outcome(self, task: Task, ctx: JobContext, lookups: Lookups) -> Outcome:
        """The outcome as a worker makes it, the stored document looked up as a worker does."""
        url = task.url
        stored = await lookups.stored(ctx.source_id, url) if ctx.recrawl else None
        if self.kind == PAGE:
            outcome = page_outcome(task.url_id, url, [], words=f"content {self.content}")
            outcome.links = [canonical_url(link if "://" in link else SITE + link) or "" for link in self.links]
            outcome.stored, outcome.etag = stored, f'"{self.content}"'
            assert outcome.page is not None
            links = await lookups.links(stored.id) if stored is not None and self.not_modified else None
            if stored is not None and links is not None:
                outcome = Outcome(task.url_id, UNCHANGED, url=url, http_status=304, links=links, stored=stored)
            elif stored is not None and outcome.page.content_hash == stored.content_hash:
                outcome.kind = UNCHANGED
        elif self.kind == REDIRECT:
            target = canonical_url(SITE + self.target)
            outcome = Outcome(task.url_id, REDIRECT, url=url, http_status=301, location=target, stored=stored)
        elif self.kind == RETRY:
            outcome = Outcome(task.url_id, RETRY, url=url, http_status=503, reason="http_status", detail="HTTP 503")
        elif self.kind == FAILED:
            outcome = Outcome(
                task.url_id, FAILED, url=url, http_status=404, reason="http_status", detail="HTTP 404", stored=stored
            )
        else:
            outcome = Outcome(task.url_id, SKIPPED, url=url, http_status=200, reason="content_type", detail="image/png")
        return carrying(outcome, task if self.carry else None)


DRAWN = st.builds(
    Drawn,
    pick=st.integers(0, 1000),
    again=st.integers(0, 9).map(lambda n: n == 0),
    kind=st.sampled_from([PAGE, PAGE, PAGE, PAGE, REDIRECT, RETRY, FAILED, SKIPPED]),
    links=st.lists(st.sampled_from([*PATHS, "/private/x", "http://elsewhere.test/"]), max_size=6).map(tuple),
    target=st.sampled_from(PATHS),
    carry=st.booleans(),
    content=st.integers(0, 2),
    not_modified=st.booleans(),
)
BATCHES = st.lists(st.lists(DRAWN, min_size=1, max_size=5), min_size=1, max_size=10)
CONFIGS = st.fixed_dictionaries(
    {
        "max_depth": st.integers(1, 3),
        "max_pages": st.integers(2, 40),
        "concurrency": st.integers(1, 6),
        "exclude_patterns": st.just(["/private/"]),
    }
)


async def test_the_fast_and_the_full_settle_write_the_same_rows_on_random_batches(pg_url: str, tmp_path: Path) -> None:
    """Two sources crawled twice the same random way, one settled by crawl_settle() where it can,
    the other only by the full settle, in lockstep: the same batches of the same outcomes (pages,
    redirects, retries, failures, skips, duplicate deliveries, URLs found nearer a seed, a page
    budget; on the recrawl, new, changed and unchanged pages, 304s and pages found gone) lease the
    same tasks and leave the same rows."""
    loop = asyncio.get_running_loop()
    numbers = itertools.count()
    async with crawler_database(common_settings(pg_url, tmp_path / "data")) as db:
        fast = Settler(db, progress_interval=3600, versions_kept=2, publisher="worker-1")
        full = Settler(db, progress_interval=3600, versions_kept=2, fast=False, publisher="worker-1")
        lookups = Lookups(db)

        async def start(source_id: str, config: dict[str, Any]) -> tuple[JobContext, dict[str, Task]]:
            store = CrawlStore(db)
            created = await store.create_jobs([job_spec([SITE + "/"], source_id=source_id, config=config)])
            ctx = job_context(await store.get_job(created.jobs[0].id))
            return ctx, {t.url: t for t in created.tasks}

        async def settle(
            settler: Settler, ctx: JobContext, held: dict[str, Task], done: set[str], batch: list[Drawn]
        ) -> list[Any]:
            chosen: dict[str, Drawn] = {}
            for d in batch:
                # A URL still leased, or now and then one settled already (a duplicate delivery).
                urls = sorted(set(held) - done - set(chosen)) if not d.again else []
                urls = urls or sorted(held)
                chosen.setdefault(urls[d.pick % len(urls)], d)
            outcomes = [await d.outcome(held[url], ctx, lookups) for url, d in chosen.items()]
            settled = await settler.settle(ctx, outcomes, known={})
            done.update(url for url, d in chosen.items() if d.kind != RETRY)
            for url, d in chosen.items():
                if d.kind == RETRY and len(held) > 1:
                    del held[url]  # leased again once due: its new task carries the row as it is then
            held.update({t.url: t for t in settled.tasks})
            await assert_carried_as_stored(lookups, ctx, settled.tasks)
            return leased(settled)

        async def example(config: dict[str, Any], crawls: list[list[list[Drawn]]]) -> None:
            n = next(numbers)
            for batches in crawls:
                (a, a_held), a_done = await start(f"fast-{n}", config), set[str]()
                (b, b_held), b_done = await start(f"full-{n}", config), set[str]()
                assert a.recrawl == b.recrawl
                for batch in batches:
                    assert await settle(fast, a, a_held, a_done, batch) == await settle(full, b, b_held, b_done, batch)
                    assert sorted(a_held) == sorted(b_held)
                assert await snapshot(db, a.id) == await snapshot(db, b.id)

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(CONFIGS, st.lists(BATCHES, min_size=2, max_size=3))
        def each(config: dict[str, Any], crawls: list[list[list[Drawn]]]) -> None:
            asyncio.run_coroutine_threadsafe(example(config, crawls), loop).result(timeout=60)

        await asyncio.to_thread(each)

    assert fast.fast_settles > 0 and fast.full_settles > 0  # both paths were taken
