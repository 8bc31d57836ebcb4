"""The browser fetcher on its own, in Debian's Chromium: pages at once, blocked resources, the
body limit, a hung browser killed, and browsers recycled so their memory stays bounded."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.crawler.fetch import Auth, Fetcher
from services.crawler.render import BrowserFetcher, BrowserUnavailable, Rendered, browser_pids
from tests.support.site import LocalSite, Page

SHELL = (
    b'<html><body><div id="root"></div><img src="/pic.png"><video src="/clip.mp4"></video>'
    b'<script src="/app.js"></script></body></html>'
)
APP = b"document.getElementById('root').innerHTML = '<h1>Drawn</h1><a href=\"/next\">next</a>';"


@pytest.fixture(autouse=True)
async def no_browser_left() -> AsyncIterator[None]:
    """Every browser a test started is gone when it ends: closed is exited."""
    yield
    assert browser_pids() == set()


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    s = LocalSite()
    s.pages["/app.js"] = Page(body=APP, content_type="application/javascript")
    s.pages["/pic.png"] = Page(body=b"\x89PNG", content_type="image/png")
    s.pages["/clip.mp4"] = Page(body=b"mp4", content_type="video/mp4")
    async with s.serve():
        yield s


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(user_agent="QuaeroTest", timeout=10, max_body=1 << 20)
    yield f
    await f.close()


async def render_once(fetcher: Fetcher, url: str, **options: Any) -> Rendered:
    """`url` (the app shell) rendered by a browser of its own, closed after."""
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", **options)
    try:
        return await browser.render(url, SHELL, "text/html", None)
    finally:
        await browser.close()


async def test_pages_render_with_images_and_media_blocked(site: LocalSite, fetcher: Fetcher) -> None:
    done = await render_once(fetcher, site.url("/p"), timeout=10)
    assert done.error is None and done.html is not None
    assert b"<h1>Drawn</h1>" in done.html
    assert site.hits["/app.js"] == 1
    assert site.hits["/pic.png"] == 0 and site.hits["/clip.mp4"] == 0
    assert site.hits["/p"] == 0  # the document is the body the HTTP fetch read


async def test_at_most_the_configured_pages_render_at_once(site: LocalSite, fetcher: Fetcher) -> None:
    site.held = lambda path: path == "/app.js"
    site.close()
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", pages=2, timeout=10)
    try:
        renders = [
            asyncio.ensure_future(browser.render(site.url(f"/p{i}"), SHELL, "text/html", None)) for i in range(6)
        ]
        async with asyncio.timeout(30):
            while site.waiting < 2:  # noqa: ASYNC110 - the site counts; there is nothing to wait on
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # room for a third page to start, if one could
        assert site.waiting == 2
        site.open()
        results = await asyncio.gather(*renders)
    finally:
        await browser.close()
    assert all(r.html and b"Drawn" in r.html for r in results)
    assert site.max_active <= 2


async def test_a_dom_over_the_body_limit_is_too_large(site: LocalSite) -> None:
    small = Fetcher(user_agent="QuaeroTest", timeout=10, max_body=2048)
    site.pages["/app.js"] = Page(
        body=b"document.getElementById('root').textContent = 'x'.repeat(100000);", content_type="application/javascript"
    )
    browser = BrowserFetcher(small, path="/usr/bin/chromium", timeout=10)
    try:
        done = await browser.render(site.url("/p"), SHELL, "text/html", None)
    finally:
        await browser.close()
        await small.close()
    assert done.too_large and done.html is None


async def test_a_hung_browser_is_killed_and_the_next_page_gets_a_new_one(site: LocalSite, fetcher: Fetcher) -> None:
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", timeout=2, hang_margin=1)
    try:
        assert (await browser.render(site.url("/a"), SHELL, "text/html", None)).error is None
        hung = browser.browser_pid()
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        done = await browser.render(site.url("/b"), SHELL, "text/html", None)
        assert done.error is not None and "did not answer" in done.error
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
        again = await browser.render(site.url("/c"), SHELL, "text/html", None)
        assert again.error is None and again.html and b"Drawn" in again.html
        assert browser.launches == 2
    finally:
        await browser.close()


async def test_browsers_are_recycled_every_n_pages(site: LocalSite, fetcher: Fetcher) -> None:
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", recycle_pages=2, timeout=10)
    try:
        for i in range(5):
            done = await browser.render(site.url(f"/p{i}"), SHELL, "text/html", None)
            assert done.error is None
            assert len(browser_pids()) <= 1  # a retired browser is gone before the next starts
    finally:
        await browser.close()
    assert browser.launches == 3
    assert browser_pids() == set()


async def test_no_chromium_is_unavailable_saying_how_to_install(fetcher: Fetcher, tmp_path: object) -> None:
    browser = BrowserFetcher(fetcher, path="/nonexistent/chromium")
    assert "apt-get install chromium" in (browser.unavailable() or "")
    with pytest.raises(BrowserUnavailable, match="QUAERO_BROWSER_PATH=/nonexistent/chromium"):
        await browser.render("http://127.0.0.1:9/", SHELL, "text/html", None)


STORAGE_SHELL = (
    b'<html><body><div id="root"></div><script>'
    b"const seen = localStorage.getItem('seen') || 'none';"
    b"localStorage.setItem('seen', location.pathname);"
    b"document.getElementById('root').textContent = 'before: ' + seen;"
    b"</script></body></html>"
)


async def test_pages_are_reused_within_one_set_of_credentials_and_never_across(
    site: LocalSite, fetcher: Fetcher
) -> None:
    """Pages stay open between renders (as in one browser, a site's storage lives on), but what
    one source's pages keep never reaches a page rendered with other credentials."""
    mine = Auth.for_source(site.url("/"), {"X-Token": "mine"}, {})
    theirs = Auth.for_source(site.url("/"), {"X-Token": "theirs"}, {})
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", timeout=10, pages=1)
    try:
        seen = [
            (await browser.render(site.url(path), STORAGE_SHELL, "text/html", auth)).html or b""
            for path, auth in (("/a", mine), ("/b", mine), ("/c", theirs), ("/d", None), ("/e", mine))
        ]
        assert browser.launches == 1
    finally:
        await browser.close()
    assert b"before: none" in seen[0]
    assert b"before: /a" in seen[1]  # the same credentials: one browser's storage
    assert b"before: none" in seen[2] and b"before: none" in seen[3]  # other credentials, and none
    assert b"before: /b" in seen[4]


def app(script: str) -> Page:
    return Page(body=script.encode(), content_type="application/javascript")


DRAW = "const root = document.getElementById('root'); const add = t => root.insertAdjacentHTML('beforeend', t);"


@pytest.mark.parametrize(
    ("script", "why"),
    [
        # Longer than the quiet window, and than Playwright's networkidle half second.
        (f"{DRAW} setTimeout(() => add('<a href=\"/late\">late</a>'), 700);", "a link drawn after a timer"),
        (f"{DRAW} setTimeout(() => setTimeout(() => add('<a href=\"/late\">late</a>'), 300), 300);", "timers in turn"),
        # Drawn a frame at a time, with nothing pending in between but the next frame.
        (
            f"{DRAW} let k = 0; const step = () => {{ add(`<p>${{k}}</p>`); if (++k < 40) requestAnimationFrame(step);"
            " else add('<a href=\"/late\">late</a>'); }; requestAnimationFrame(step);",
            "a DOM drawn frame by frame",
        ),
        # The DOM is quiet while the request is answered (slowly): it is waited for.
        (
            f"{DRAW} fetch('/slow.json').then(r => r.json()).then(d => add(`<a href=\"${{d.href}}\">late</a>`));",
            "a link from a slow request",
        ),
    ],
)
async def test_a_page_is_read_once_it_settled(site: LocalSite, fetcher: Fetcher, script: str, why: str) -> None:
    """After `load`, the DOM is read only once no request is in flight, no short timer is pending
    and the DOM stopped changing: whatever the page draws late is there."""
    site.pages["/app.js"] = app(script)
    site.pages["/slow.json"] = Page(body=b'{"href": "/late"}', content_type="application/json", delay=0.8)
    done = await render_once(fetcher, site.url("/p"), timeout=10)
    assert done.error is None and done.html is not None, why
    assert b'href="/late"' in done.html, why
    assert done.waited == "", why


async def test_a_page_that_never_stops_changing_is_read_after_the_busy_cap(site: LocalSite, fetcher: Fetcher) -> None:
    """A ticking clock (the DOM changing every 50 ms, a timer always pending) does not hold the
    page until the fetch timeout, nor do timers set for later than SHORT_TIMER_MS."""
    site.pages["/app.js"] = app(
        f'{DRAW} add(\'<a href="/now">now</a><span id="t"></span>\');'
        " const tick = () => { document.getElementById('t').textContent = Date.now(); setTimeout(tick, 50); }; tick();"
        " setTimeout(() => add('<a href=\"/much-later\">later</a>'), 3000);"
    )
    done = await render_once(fetcher, site.url("/p"), timeout=20, busy_cap=1.0)
    assert done.error is None and done.html is not None
    assert b'href="/now"' in done.html
    assert b"/much-later" not in done.html  # read before the 3 s timer: not waited for
    assert done.waited == ""


# One step of what a page does after `load`, then the next: ("timer", ms), ("frames", n: the DOM
# drawn in n animation frames), ("fetch", seconds the answer takes), ("then", 0: a microtask).
STEPS = st.one_of(
    st.tuples(st.just("timer"), st.integers(0, 900)),
    st.tuples(st.just("frames"), st.integers(1, 30)),
    st.tuples(st.just("fetch"), st.sampled_from([0.0, 0.05, 0.3, 0.9])),
    st.tuples(st.just("then"), st.just(0)),
)


def chained(steps: list[tuple[str, float]], prefix: str) -> str:
    """A script doing `steps` one after another (and some at once: a chain of its own per
    step) and marking each done in the DOM: <i id="m{k}">."""
    make = {
        "timer": "n => new Promise(r => setTimeout(r, {}))",
        "frames": "n => new Promise(r => {{ let k = 0; const f = () => {{ add('<b></b>');"
        " if (++k < {}) requestAnimationFrame(f); else r(); }}; requestAnimationFrame(f); }})",
        "fetch": f"n => fetch('{prefix}/' + n + '.json').then(r => r.json())" + "/*{}*/",
        "then": "n => Promise.resolve({})",
    }
    steps_js = ",".join(make[kind].format(arg) for kind, arg in steps)
    return (
        f"{DRAW} const steps = [{steps_js}];"
        ' (async () => { for (let k = 0; k < steps.length; k++) { await steps[k](k); add(`<i id="m${k}"></i>`); } })();'
        ' setTimeout(() => steps.forEach((s, k) => s(k).then(() => add(`<i id="p${k}"></i>`))), 0);'
    )


async def test_whatever_a_page_draws_in_its_first_seconds_is_read(site: LocalSite, fetcher: Fetcher) -> None:
    """Property: a page drawing through any chain of short timers, animation frames that change
    the DOM, requests (answered in up to 0.9 s) and microtasks, after `load`, is read only once
    all of it is drawn."""
    loop = asyncio.get_running_loop()
    browser = BrowserFetcher(fetcher, path="/usr/bin/chromium", timeout=20, pages=1)
    numbers = itertools.count()

    async def check(steps: list[tuple[str, float]]) -> None:
        prefix = f"/e{next(numbers)}"
        site.pages[prefix + "/app.js"] = app(chained(steps, prefix))
        for k, (kind, delay) in enumerate(steps):
            if kind == "fetch":
                site.pages[f"{prefix}/{k}.json"] = Page(body=b"{}", content_type="application/json", delay=delay)
        shell = SHELL.replace(b"/app.js", f"{prefix}/app.js".encode())
        done = await browser.render(site.url(prefix + "/p"), shell, "text/html", None)
        assert done.error is None and done.html is not None, steps
        drawn = {f'id="{m}{k}"'.encode() for m in "mp" for k in range(len(steps))}
        assert {d for d in drawn if d not in done.html} == set(), steps

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(st.lists(STEPS, min_size=1, max_size=4))
    def each(steps: list[tuple[str, float]]) -> None:
        asyncio.run_coroutine_threadsafe(check(steps), loop).result(timeout=60)

    try:
        await asyncio.to_thread(each)
    finally:
        await browser.close()


async def test_a_page_that_reloads_itself_is_read_after_the_reload(site: LocalSite, fetcher: Fetcher) -> None:
    site.pages["/app.js"] = app(
        f"{DRAW} if (!sessionStorage.getItem('again')) {{ sessionStorage.setItem('again', '1');"
        " setTimeout(() => location.reload(), 50); } else add('<a href=\"/after\">after</a>');"
    )
    done = await render_once(fetcher, site.url("/p"), timeout=10)
    assert done.error is None and done.html is not None
    assert b'href="/after"' in done.html
