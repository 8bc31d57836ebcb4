"""Pages that need JavaScript (DESIGN 14): rendered in Debian's Chromium, embedded and with worker
processes on PostgreSQL + RabbitMQ, against local sites whose exact results are known."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psutil
import pytest

from quaero.v1 import crawl_job_pb2, crawler_service_pb2, source_pb2
from services.crawler.render import browser_pids
from services.crawler.settings import CrawlerSettings
from tests.support.apps import SHELL, AppSite, hybrid_site, spa_site, static_site
from tests.support.crawl_workers import worker_processes
from tests.support.crawler import (
    Crawler,
    accepted_ids,
    crawler_settings,
    frontier,
    run_step,
    running_crawler,
    source,
    step_call,
    wait_for_status,
)
from tests.support.site import LocalSite, Page

CONFIG: dict[str, Any] = {"max_depth": 3}


async def documents(c: Crawler, job_id: str) -> dict[str, crawl_job_pb2.Document]:
    listed = await c.stub.ListDocuments(crawler_service_pb2.ListDocumentsRequest(job_id=job_id, limit=500))
    out = {}
    for d in listed.documents:
        got = await c.stub.GetDocument(crawler_service_pb2.GetDocumentRequest(id=d.id))
        out[d.url] = got.document
    return out


async def job_logs(c: Crawler, job_id: str) -> list[str]:
    got = await c.stub.ListJobLogs(crawler_service_pb2.ListJobLogsRequest(job_id=job_id, order="asc", limit=500))
    return [log.message for log in got.logs]


async def crawl(c: Crawler, app: AppSite, **config: Any) -> str:
    events = await run_step(c.stub, step_call({**CONFIG, **config, "start_urls": [app.site.url("/")]}))
    assert events[-1].finished.ok, events[-1].finished.error
    (job_id,) = accepted_ids(events)
    return job_id


async def assert_exact(c: Crawler, app: AppSite, job_id: str) -> None:
    """Exactly the site's pages, each with its own content, rendered exactly when it needs it."""
    urls = await frontier(c.stub, job_id)
    assert urls == {u: ("done", "") for u in app.urls()}
    docs = await documents(c, job_id)
    assert set(docs) == app.urls()
    for path, (title, phrase, rendered) in app.expected.items():
        doc = docs[app.site.url(path)]
        assert doc.title == title, path
        assert phrase in doc.markdown, (path, doc.markdown)
        assert doc.metadata["rendered"] is rendered, path
    logs = await job_logs(c, job_id)
    rendered_logs = sorted(m.rsplit("): ", 1)[1] for m in logs if m.startswith("Rendered (application shell"))
    assert rendered_logs == sorted(app.site.url(p) for p, (_, _, r) in app.expected.items() if r)


async def test_auto_renders_exactly_the_pages_that_need_it(backend: dict[str, Any]) -> None:
    spa, hybrid, static = spa_site(), hybrid_site(), static_site()
    async with (
        spa.site.serve(),
        hybrid.site.serve(),
        static.site.serve(),
        running_crawler(crawler_settings(backend)) as c,
    ):
        for app in (spa, hybrid, static):
            await assert_exact(c, app, await crawl(c, app))
        # The static site: no page rendered, so the browser fetched none of its scripts.
        assert static.site.hits["/analytics.js"] == 0 and static.site.hits["/hydrate.js"] == 0
        # The shell's images never load; its script and data do, through the worker's fetcher.
        assert spa.site.hits["/api/docs.json"] >= 1


async def test_never_yields_only_the_apps_shell(backend: dict[str, Any]) -> None:
    spa = spa_site()
    async with spa.site.serve(), running_crawler(crawler_settings(backend)) as c:
        job_id = await crawl(c, spa, render="never")
        # Without scripts the app is its shell: no content, no links, so nothing past the seed.
        assert await frontier(c.stub, job_id) == {spa.site.url("/"): ("done", "")}
        (doc,) = (await documents(c, job_id)).values()
        assert doc.metadata["rendered"] is False
        assert "orchard" not in doc.markdown
        assert spa.site.hits["/app.js"] == 0


async def test_always_renders_static_pages_too(backend: dict[str, Any]) -> None:
    static = static_site()
    async with static.site.serve(), running_crawler(crawler_settings(backend)) as c:
        job_id = await crawl(c, static, render="always", wait_for="main h1")
        docs = await documents(c, job_id)
        assert set(docs) == static.urls()
        assert all(d.metadata["rendered"] is True for d in docs.values())
        assert static.site.hits["/analytics.js"] >= 1


async def test_without_chromium_auto_falls_back_to_http_and_always_fails_saying_how_to_install(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    spa = spa_site()
    settings = crawler_settings(backend, browser_path=str(tmp_path / "no-chromium"))
    async with spa.site.serve(), running_crawler(settings) as c:
        job_id = await crawl(c, spa)
        assert await frontier(c.stub, job_id) == {spa.site.url("/"): ("done", "")}
        warnings = [m for m in await job_logs(c, job_id) if "fetched over HTTP only" in m]
        assert len(warnings) == 1, warnings
        assert "QUAERO_BROWSER_PATH" in warnings[0]

        events = await run_step(c.stub, step_call({**CONFIG, "render": "always", "start_urls": [spa.site.url("/")]}))
        finished = events[-1].finished
        assert not finished.ok
        job = await wait_for_status(c.stub, accepted_ids(events)[0])
        assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_FAILED
        assert "apt-get install chromium" in job.error and "QUAERO_BROWSER_PATH" in job.error


async def test_browser_requests_go_through_the_guard_and_credentials_stay_on_the_origin(
    backend: dict[str, Any],
) -> None:
    """The shell's script asks a denied address and another host: the denied one is never
    connected to; the other host gets the request without the source's credentials, which the
    source's own origin gets."""
    denied, other = LocalSite(host="127.0.0.2"), LocalSite(host="127.0.0.3")
    denied.pages["/secret.js"] = Page(body=b"window.secret = 1;", content_type="application/javascript")
    other.pages["/lib.js"] = Page(body=b"window.lib = 1;", content_type="application/javascript")
    site = LocalSite()
    async with denied.serve(), other.serve(), site.serve():
        script = (
            "document.getElementById('root').innerHTML = '<main><h1>Guarded</h1><p>drawn</p></main>';"
            f"fetch('{denied.url('/secret.js')}').catch(() => {{}});"
            f"fetch('{other.url('/lib.js')}').catch(() => {{}});"
            "fetch('/own.json').catch(() => {});"
        )
        site.pages["/"] = Page(body=SHELL % b"/app.js")
        site.pages["/app.js"] = Page(body=script.encode(), content_type="application/javascript")
        site.pages["/own.json"] = Page(body=b"{}", content_type="application/json")
        settings = crawler_settings(backend, fetch_deny=["127.0.0.2/32"])
        auth = source_pb2.SourceAuth(headers={"X-Token": "s3cret"}, cookies={"session": "abc"})
        src = source("guarded", site.url("/"), auth=auth, crawl=crawl_job_pb2.CrawlConfig(max_depth=0))
        async with running_crawler(settings) as c:
            events = await run_step(c.stub, step_call({}, sources=[src]))
            assert events[-1].finished.ok, events[-1].finished.error
            docs = await documents(c, accepted_ids(events)[0])
    ((doc),) = docs.values()
    assert "Guarded" in doc.markdown and doc.metadata["rendered"] is True
    assert denied.hits == {}
    # At least once: a render retried on a loaded machine asks again.
    assert other.hits["/lib.js"] >= 1
    for _, _, other_headers in other.seen:
        assert "X-Token" not in other_headers and "Cookie" not in other_headers
    own = {path: headers for _, path, headers in site.seen}
    for path in ("/", "/app.js", "/own.json"):
        assert own[path].get("X-Token") == "s3cret", path
        assert own[path].get("Cookie") == "session=abc", path


async def test_two_worker_processes_render_exactly_and_a_killed_browser_loses_nothing(
    shared: CrawlerSettings, tmp_path: Path
) -> None:
    spa, hybrid = spa_site(), hybrid_site()
    # Scripts wait at the site's gate, so renders are under way when the browsers are killed.
    spa.site.held = lambda path: path == "/app.js"
    async with (
        spa.site.serve(),
        hybrid.site.serve(),
        running_crawler(shared, run_workers=False) as c,
        worker_processes(shared, 2, tmp_path) as workers,
    ):
        await assert_exact(c, hybrid, await crawl(c, hybrid))

        spa.site.close()
        events_task = asyncio.ensure_future(run_step(c.stub, step_call({**CONFIG, "start_urls": [spa.site.url("/")]})))
        async with asyncio.timeout(60):
            while spa.site.waiting < 1:  # noqa: ASYNC110 - the site counts; there is nothing to wait on
                await asyncio.sleep(0.02)
        killed = [pid for w in workers for pid in browser_pids(w.proc.pid)]
        assert killed, "no browser is running in the workers"
        for pid in killed:
            psutil.Process(pid).kill()
        spa.site.open()
        events = await events_task
        assert events[-1].finished.ok, events[-1].finished.error
        job_id = accepted_ids(events)[0]
        await assert_exact(c, spa, job_id)
        retried = [m for m in await job_logs(c, job_id) if m.startswith("Will retry (render_error")]
        assert retried, await job_logs(c, job_id)


@pytest.mark.parametrize("value", ["sometimes", "", 3])
async def test_a_bad_render_option_is_refused_naming_the_field(backend: dict[str, Any], value: Any) -> None:
    async with running_crawler(crawler_settings(backend)) as c:
        events = await run_step(c.stub, step_call({"render": value, "start_urls": ["http://127.0.0.1:9/"]}))
        finished = events[-1].finished
        assert not finished.ok and "config.render" in finished.error
