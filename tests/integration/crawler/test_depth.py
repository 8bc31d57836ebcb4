"""Depth is the shortest path through the whole graph, whatever order pages are fetched in.

A URL found nearer a seed after its page was fetched carries the shorter depth down the outlinks
its page stored, so every descendant it lowers is lowered too, and one that was skipped for its
depth is fetched. Shown on a site whose fetch order the test controls, with a page budget, and
as a property: random site graphs with random per-page delays store exactly the breadth-first
set, embedded (SQLite, one worker) and on PostgreSQL with RabbitMQ and two worker processes.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from services.crawler.settings import CrawlerSettings
from tests.support.crawl_workers import worker_processes
from tests.support.crawler import (
    Crawler,
    accepted_ids,
    assert_counters_match,
    crawler_settings,
    job_documents,
    run_step,
    running_crawler,
    source,
    step_call,
)
from tests.support.site import LocalSite, Page, html_page


async def frontier_depths(c: Crawler, job_id: str) -> dict[str, tuple[str, str, int]]:
    """canonical URL -> (state, reason, depth) of every URL the job recorded."""
    out: dict[str, tuple[str, str, int]] = {}
    offset = 0
    while True:
        page = await c.stub.ListCrawlUrls(
            crawler_service_pb2.ListCrawlUrlsRequest(job_id=job_id, limit=500, offset=offset)
        )
        for u in page.urls:
            state = crawl_job_pb2.CrawlUrlState.Name(u.state).removeprefix("CRAWL_URL_STATE_").lower()
            out[u.url] = (state, u.reason, u.depth)
        offset += len(page.urls)
        if offset >= page.total_count or not page.urls:
            return out


async def until_settled(c: Crawler, job_id: str, url: str) -> None:
    """Until the job's frontier records `url` as settled (a bound for hangs, not a speed check)."""
    async with asyncio.timeout(60):
        while (await frontier_depths(c, job_id)).get(url, ("queued",))[0] == "queued":  # noqa: ASYNC110 - the database
            await asyncio.sleep(0.02)


def diamond(site: LocalSite) -> None:
    """/ -> /x, /b; /x -> /y -> /a; /b -> /a; /a -> /c -> /g. True depths: /a 2 (through /b),
    /c 3, /g 4."""
    links = {"/": ["/x", "/b"], "/x": ["/y"], "/y": ["/a"], "/b": ["/a"], "/a": ["/c"], "/c": ["/g"], "/g": []}
    for path, targets in links.items():
        site.add(path, f"Page {path}", targets)


async def test_a_shorter_path_found_late_lowers_every_descendant(backend: dict[str, Any]) -> None:
    """/b answers only once /c has been settled: /a was fetched at depth 3 and /c at 4, with /g
    beyond max_depth 4. When /b's link finds /a at depth 2, /c becomes 3 and /g 4, and /g is
    fetched; nothing is fetched twice."""
    site = LocalSite(held=lambda path: path == "/b")
    diamond(site)
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        site.close()
        call = step_call({"max_depth": 4, "concurrency": 4}, sources=[source("diamond", site.url("/"))])
        run = asyncio.ensure_future(run_step(c.stub, call))
        job_id = await first_job(c)
        await until_settled(c, job_id, site.url("/c"))
        before = await frontier_depths(c, job_id)
        site.open()
        events = await run

        assert events[-1].finished.ok, events[-1].finished.error
        urls = await frontier_depths(c, job_id)
        documents = await job_documents(c.stub, job_id)

    assert before[site.url("/a")][2] == 3 and before[site.url("/g")] == ("skipped", "depth", 5)
    depths = {"/": 0, "/x": 1, "/b": 1, "/y": 2, "/a": 2, "/c": 3, "/g": 4}
    assert urls == {site.url(p): ("done", "", d) for p, d in depths.items()}
    assert sorted(documents) == sorted(site.url(p) for p in depths)
    assert all(site.hits[p] == 1 for p in depths)


async def first_job(c: Crawler) -> str:
    async with asyncio.timeout(30):
        while True:
            jobs = await c.stub.ListCrawlJobs(crawler_service_pb2.ListCrawlJobsRequest(limit=1))
            if jobs.crawl_jobs:
                return str(jobs.crawl_jobs[0].id)
            await asyncio.sleep(0.02)


async def test_a_page_found_nearer_when_the_budget_runs_out_keeps_its_document(backend: dict[str, Any]) -> None:
    """/a is fetched at max_depth (its links beyond it); then /r, a redirect to /a, finds it
    nearer while /z spends the last page of the budget. /a stays done with its document (only its
    depth changes): the counters, the frontier and the job's documents agree."""
    site = LocalSite(held=lambda path: path in ("/r", "/z"))
    site.add("/", "Home", ["/x", "/r", "/z"])
    site.add("/x", "X", ["/a"])
    site.add("/a", "A", ["/a1", "/a2"])
    site.pages["/r"] = Page(status=301, headers={"Location": "/a"})
    for leaf in ("/z", "/a1", "/a2"):
        site.add(leaf, f"Page {leaf}")
    async with site.serve(), running_crawler(crawler_settings(backend)) as c:
        site.close()
        call = step_call({"max_depth": 2, "max_pages": 4}, sources=[source("budget", site.url("/"))])
        run = asyncio.ensure_future(run_step(c.stub, call))
        job_id = await first_job(c)
        await until_settled(c, job_id, site.url("/a"))
        site.open()
        events = await run

        assert events[-1].finished.ok, events[-1].finished.error
        job = (await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))).crawl_job
        urls = await frontier_depths(c, job_id)
        documents = await job_documents(c.stub, job_id)

    assert sorted(documents) == sorted(site.url(p) for p in ("/", "/x", "/a", "/z"))
    assert {u for u, (state, _, _) in urls.items() if state == "done"} - {site.url("/r")} == set(documents)
    assert urls[site.url("/a")] == ("done", "", 1)
    assert_counters_match(job, {u: (s, r) for u, (s, r, _) in urls.items()}, len(documents))


# ------------------------------------------------------------------------------ property


@dataclass(frozen=True)
class Graph:
    """A site of `size` nodes: node 0 is the seed; each node is a page linking to `links[n]`, a
    redirect to `redirects[n]`, or missing (404); each answers after `delays[n]` seconds."""

    links: tuple[tuple[int, ...], ...]
    redirects: tuple[int | None, ...]
    missing: frozenset[int]
    delays: tuple[float, ...]
    max_depth: int
    concurrency: int

    def expected(self) -> dict[int, tuple[str, str, int]]:
        """node -> (state, reason, depth) a crawl must record: 0-1 breadth-first search (a
        redirect's target at the redirect's depth, a link one deeper), pages up to max_depth
        fetched, their links one beyond it recorded as skipped for depth."""
        depth = {0: 0}
        queue = collections.deque([0])
        while queue:
            node = queue.popleft()
            if node in self.missing or depth[node] > self.max_depth:
                continue
            target = self.redirects[node]
            edges = [(target, 0)] if target is not None else [(n, 1) for n in self.links[node]]
            for child, step in edges:
                d = depth[node] + step
                if d < depth.get(child, 1 << 30):
                    depth[child] = d
                    (queue.appendleft if step == 0 else queue.append)(child)
        out = {}
        for node, d in depth.items():
            if d > self.max_depth:
                out[node] = ("skipped", "depth", d)
            elif node in self.missing:
                out[node] = ("failed", "http_status", d)
            else:
                out[node] = ("done", "", d)
        return out

    def pages(self, prefix: str) -> dict[str, Page]:
        out = {}
        for node in range(len(self.links)):
            path = f"{prefix}/{node}"
            if node in self.missing:
                continue
            target = self.redirects[node]
            if target is not None:
                out[path] = Page(status=301, headers={"Location": f"{prefix}/{target}"}, delay=self.delays[node])
            else:
                links = [f"{prefix}/{n}" for n in self.links[node]]
                out[path] = Page(body=html_page(f"Node {node}", links), delay=self.delays[node])
        return out


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    size = draw(st.integers(4, 14))
    nodes = st.integers(0, size - 1)
    # Chains (node n links to n + 1) with shortcuts and back links, so that most URLs can be
    # reached by a long and a short path.
    links = tuple(
        tuple(draw(st.lists(nodes, max_size=3)) + ([n + 1] if n + 1 < size and draw(st.booleans()) else []))
        for n in range(size)
    )
    # A sixth of the nodes but the seed redirect, never to themselves (that is a redirect loop).
    redirects = tuple(
        draw(nodes.filter(lambda m, n=n: m != n)) if n and draw(st.integers(0, 5)) == 0 else None for n in range(size)
    )
    missing = frozenset(n for n in range(1, size) if draw(st.integers(0, 11)) == 0)
    # Mostly quick, a few slow: a slow page on a short path is what makes a longer path arrive first.
    delays = tuple(draw(st.sampled_from([0.0, 0.0, 0.0, 0.005, 0.2])) for _ in range(size))
    return Graph(links, redirects, missing, delays, draw(st.integers(2, 5)), draw(st.integers(2, 6)))


async def crawl_graphs(c: Crawler, site: LocalSite, examples: int) -> None:
    """Crawl `examples` random graphs through `c`, each under a path prefix of its own, and check
    each crawl's frontier, documents and counters against breadth-first truth."""
    loop = asyncio.get_running_loop()
    numbers = itertools.count()

    async def check(graph: Graph) -> None:
        n = next(numbers)
        prefix = f"/g{n}"
        site.pages.update(graph.pages(prefix))
        config = {"max_depth": graph.max_depth, "concurrency": graph.concurrency}
        events = await run_step(c.stub, step_call(config, sources=[source(f"graph-{n}", site.url(prefix + "/0"))]))
        assert events[-1].finished.ok, events[-1].finished.error
        (job_id,) = accepted_ids(events)
        urls = await frontier_depths(c, job_id)
        documents = await job_documents(c.stub, job_id)
        job = (await c.stub.GetCrawlJob(crawler_service_pb2.GetCrawlJobRequest(id=job_id))).crawl_job
        expected = {site.url(f"{prefix}/{node}"): want for node, want in graph.expected().items()}
        assert urls == expected, graph
        stored = {url for url, (state, _, _) in expected.items() if state == "done"}
        stored -= {site.url(f"{prefix}/{node}") for node, target in enumerate(graph.redirects) if target is not None}
        assert sorted(documents) == sorted(stored), graph
        assert_counters_match(job, {u: (s, r) for u, (s, r, _) in urls.items()}, len(documents))

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(graphs())
    def each(graph: Graph) -> None:
        # Hypothesis drives from a thread; the crawl runs in the test's loop with the servers.
        asyncio.run_coroutine_threadsafe(check(graph), loop).result(timeout=120)

    await asyncio.to_thread(each)


async def test_random_graphs_store_the_breadth_first_set_embedded(tmp_path: Path) -> None:
    site = LocalSite()
    settings_ = crawler_settings({"database_url": None, "data_dir": tmp_path / "data"})
    async with site.serve(), running_crawler(settings_) as c:
        await crawl_graphs(c, site, examples=30)


async def test_random_graphs_store_the_breadth_first_set_with_two_workers(
    shared: CrawlerSettings, tmp_path: Path
) -> None:
    site = LocalSite()
    async with (
        site.serve(),
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path),
    ):
        await crawl_graphs(c, site, examples=25)
