"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against a real stack
crawling a local site: execute a definition, watch its job reach `completed`, find its documents.

`QUAERO_UPDATE_SCREENSHOT=1` also writes the screenshot the README shows (docs/ui.png).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.runs import define, execute, wait_for
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite, html_page
from tests.support.site import Page as SitePage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "ui.png"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    await context.close()
    assert errors == [], errors  # no script errors, no failed requests, on any page visited


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    site = LocalSite()
    site.add("/", "Birds of the coast", ["/pelicans.html", "/herons.html", "/missing.html", "/far/1.html"])
    site.add("/pelicans.html", "Pelicans", ["/"], body="Brown pelicans dive for fish along the coast")
    site.add("/herons.html", "Herons", ["/"], body="Grey herons wait in the shallows")
    site.add("/far/1.html", "Far away", ["/far/2.html"])
    site.add("/far/2.html", "Too far")
    async with site.serve():  # which opens the gate again when it ends
        yield site


@pytest.fixture
async def stack(tmp_path: Path, site: LocalSite) -> AsyncIterator[Stack]:
    async with running_stack(common_settings(None, tmp_path / "data")) as s:
        await define(s, {"id": "tidy", "name": "Tidy the index", "steps": [{"name": "reindex", "action": "reindex"}]})
        await define(
            s,
            {
                "id": "birds",
                "name": "Coastal birds",
                "steps": [
                    {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], "max_depth": 1}}
                ],
                "post_jobs": ["tidy"],
            },
        )
        yield s


async def test_execute_a_definition_watch_its_job_complete_and_find_its_documents(
    stack: Stack, site: LocalSite, page: Page, tmp_path: Path
) -> None:
    site.close()  # the crawl waits for the site until the job page is open
    await page.goto(stack.base_url + "/")
    await page.locator("button.execute[data-definition=birds]").click()

    # The execution page shows the crawl job running, with its progress bar.
    await expect(page).to_have_url(re.compile(r"#/executions/[0-9a-f-]+$"))
    running_bar = page.locator(".progress[data-status=running]")
    await expect(running_bar).to_be_visible()
    await page.locator("table a[href^='#/jobs/']").first.click()

    # The job page follows the job live: the site answers, the job completes.
    await expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]+$"))
    await expect(page.locator("h1")).to_have_text("crawl: start_urls")
    await expect(page.locator("h1 + .badge")).to_have_text("running")
    site.open()
    await expect(page.locator("h1 + .badge")).to_have_text("completed", timeout=60_000)
    await expect(page.locator(".card .progress")).to_have_attribute("aria-valuenow", "100")
    await expect(page.locator(".card .progress em")).to_have_text("5/5 urls · 100%")
    job_id = page.url.rsplit("/", 1)[1]
    logs = (await stack.http.get(f"/api/jobs/{job_id}/logs")).json()["logs"]
    assert len(logs) >= 3  # started, the 404, completed
    await expect(page.locator(".panel tbody tr")).to_have_count(len(logs))  # every log line, newest first
    await expect(page.locator(".panel tbody tr").first).to_contain_text(logs[0]["message"])
    await page.screenshot(path=str(tmp_path / "ui.png"))
    if os.environ.get("QUAERO_UPDATE_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "ui.png", README_SCREENSHOT)

    # Logs filtered to warn and above: only the 404.
    await page.locator("select[name=level]").select_option("warn")
    warn_rows = page.locator(".panel tbody tr")
    await expect(warn_rows).to_have_count(1)
    await expect(warn_rows.first).to_contain_text("missing.html")

    # URLs with skip reasons.
    await page.locator("button[data-tab=urls]").click()
    await page.locator("select[name=state]").select_option("skipped")
    await expect(page.locator(".panel tbody tr")).to_have_count(1)
    await expect(page.locator(".panel tbody tr").first).to_contain_text("depth")

    # Its documents, and one of them with its Markdown.
    await page.locator("button[data-tab=documents]").click()
    await expect(page.locator(".panel tbody tr")).to_have_count(4)
    await page.locator(".panel a", has_text="Pelicans").click()
    await expect(page.locator(".rendered h1")).to_have_text("Pelicans")  # rendered, not raw
    await expect(page.locator(".rendered")).to_contain_text("Brown pelicans dive for fish")
    await page.go_back()
    await page.locator("button[data-tab=documents]").click()
    await expect(page.locator(".panel tbody tr")).to_have_count(4)
    await expect(page.locator("button[data-tab=documents]")).to_have_attribute("aria-selected", "true")
    await page.wait_for_load_state("networkidle")  # a slower answer for the first tab changes nothing
    await expect(page.locator(".panel tbody tr")).to_have_count(4)

    # Search from the header: a snippet with the match highlighted.
    await page.locator("#quick-search input").fill("pelicans")
    await page.locator("#quick-search input").press("Enter")
    results = page.locator(".results li")
    await expect(results).to_have_count(2)  # the page, and the index that links to it
    await expect(results.first.locator("a")).to_have_text("Pelicans")  # the better match first
    await expect(results.first.locator(".snippet mark")).to_have_text(["Pelicans", "pelicans"])  # heading, body


async def test_executions_show_their_post_jobs_and_lineage(stack: Stack, page: Page) -> None:
    await page.goto(stack.base_url + "/#/definitions")
    await page.locator("button.execute[data-definition=birds]").click()
    await expect(page.locator("h1 + .badge")).to_have_text("completed", timeout=60_000)
    post_job = page.locator("table a[href^='#/executions/']")
    await expect(post_job).to_have_count(1, timeout=30_000)

    await post_job.click()

    await expect(page.locator("h1")).to_have_text("Tidy the index")
    await expect(page.locator(".lineage")).to_have_text("birds→tidy")
    await expect(page.locator("h1 + .badge")).to_have_text("completed", timeout=60_000)

    await page.locator("header nav a", has_text="Jobs").click()
    await expect(page.locator("tbody tr")).to_have_count(1)  # a reindex step has no crawl job
    await expect(page.locator("tbody .progress")).to_have_attribute("aria-valuenow", "100")
    await expect(page.locator(".stat", has_text="completed").locator("b")).to_have_text("1")


async def test_definitions_can_be_disabled_and_enabled(stack: Stack, page: Page) -> None:
    await page.goto(stack.base_url + "/#/definitions")
    execute = page.locator("button.execute[data-definition=birds]")
    toggle = page.locator("button.toggle[data-definition=birds]")

    await toggle.click()
    await expect(toggle).to_have_text("Enable")
    await expect(execute).to_be_disabled()
    await toggle.click()
    await expect(toggle).to_have_text("Disable")
    await expect(execute).to_be_enabled()
    assert (await stack.http.get("/api/job-definitions/birds")).json()["enabled"] is True


@pytest.mark.parametrize("token", ["ui-s3cret", "q+8/Zm9v+YmFy/=="], ids=["plain", "base64"])
async def test_with_a_token_the_ui_asks_for_it_once(tmp_path: Path, browser: Browser, token: str) -> None:
    settings = {**common_settings(None, tmp_path / "data"), "api_token": token}
    async with running_stack(settings) as guarded:
        page = await browser.new_page()
        await page.goto(guarded.base_url + "/#/jobs")
        await page.locator("form.token input").fill(token)
        await page.locator("form.token button").click()

        await expect(page.locator("h1")).to_have_text("Crawl jobs")
        cookies = await page.context.cookies()
        assert [(c["name"], c["sameSite"]) for c in cookies] == [("quaero_token", "Strict")]


PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!"
    b"\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
# A crawled page carrying script payloads: escaped ones shown as text, live ones the extractor
# and the renderer must both leave inert. Each would set window.__pwned.
XSS_PAGE = (
    b'<!doctype html><html lang="en"><head><title>Trap</title></head><body><main><h1>Trap</h1>'
    b"<p>Words about a trap.</p>"
    b"<pre><code>&lt;script&gt;window.__pwned = 1&lt;/script&gt;</code></pre>"
    b"<p>&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt; and "
    b'<a href="javascript:window.__pwned=3">a link</a></p>'
    b'<script>window.__pwned = 4</script><img src=x onerror="window.__pwned = 5"></main></body></html>'
)


async def test_a_recrawl_shows_its_changes_diffs_and_a_hostile_page_renders_inert(
    stack: Stack, site: LocalSite, page: Page
) -> None:
    site.pages["/trap.html"] = SitePage(body=XSS_PAGE)
    site.pages["/x"] = SitePage(body=PIXEL, content_type="image/gif")  # the trap's image loads
    site.pages["/"] = SitePage(body=html_page("Birds of the coast", ["/pelicans.html", "/herons.html", "/trap.html"]))
    for _ in range(2):
        started = await execute(stack, "birds")
        execution = await wait_for(stack, started["execution_id"], timeout=90)
        assert execution["status"] == "completed", execution
        site.pages["/pelicans.html"] = SitePage(
            body=html_page("Pelicans", ["/"], "White pelicans fish together on lakes")
        )
    (job, _) = [j for j in (await stack.http.get("/api/jobs", params={"order_dir": "desc"})).json()["jobs"]
                if j["source_id"].startswith("adhoc:birds")][:2]  # fmt: skip

    # The job's changes, filtered by label.
    await page.goto(stack.base_url + f"/#/jobs/{job['id']}")
    await page.locator("button[data-tab=changes]").click()
    await page.locator("select[name=change]").select_option("changed")
    rows = page.locator(".panel tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("/pelicans.html")

    # The changed document: its versions, and the diff between them.
    await rows.first.locator("a").click()
    await expect(page.locator(".versions tbody tr")).to_have_count(2)
    await page.locator("button.diff-button[data-version='2']").click()
    await expect(page.locator("pre.diff .del")).to_contain_text(["Brown pelicans dive for fish"])
    await expect(page.locator("pre.diff .add")).to_contain_text(["White pelicans fish together"])

    # A search result opens the rendered document; the raw Markdown is one click away.
    await page.locator("#quick-search input").fill("trap")
    await page.locator("#quick-search input").press("Enter")
    await page.locator(".results li a", has_text="Trap").click()
    await expect(page.locator(".rendered h1")).to_have_text("Trap")
    await expect(page.locator(".rendered")).to_contain_text("window.__pwned = 1")  # shown as text
    await page.locator("button.toggle-markdown").click()
    await expect(page.locator("pre.markdown")).to_be_visible()
    await expect(page.locator(".rendered")).to_be_hidden()
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator(".rendered script, .rendered [onerror], .rendered [href^='javascript']").count() == 0
