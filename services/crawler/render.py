"""Rendering pages that need JavaScript in headless Chromium, driven by Playwright (DESIGN 14).

One browser per worker process, started on first need, with at most `pages` pages open at once.
Pages are kept open and reused (a page is sent to about:blank between renders): a fresh browser
context per render made a renderer process each time and cost about three times the render
itself. Pages are kept in one context per set of credentials (no credentials is a set too), so
what a site's scripts keep (cookies, storage) lives as in one browser until the browser is
recycled, and never reaches pages rendered with other credentials; the browser's own cookies are
never sent anyway (below). The browser itself never touches the network: every request it makes
is intercepted, and
- the page's own document is answered with the body the HTTP fetch already read (robots.txt,
  politeness, redirects, the content type and the size cap were applied there);
- images, media and fonts are aborted, and so are frames and navigations away from the page;
- every other request (scripts, styles, XHR, fetch) is made by the worker's HTTP fetcher, so the
  fetch guard checks the address it connects to (a denied one is aborted), the source's
  credentials go only to its origin, bodies are capped as for pages, and the browser's own
  cookies never go out (a request outside the interception goes to a dead proxy and fails).
After `load` the page is waited for until it settles (or the step's `wait_for` selector appears)
within the fetch timeout; then its DOM is what gets parsed. Settled is: for QUIET seconds no
request of the page was in flight, its DOM did not change and no short timer it set is pending
(see SETTLE_SCRIPT). Playwright's `networkidle` waited half a second of no network after every
page, more than the render itself here, and still missed a timer set for 600 ms; this waits
QUIET after the last change, waits for the timers of up to SHORT_TIMER_MS the page sets in its
first TIMER_WINDOW_MS, and reads a DOM still changing after `busy_cap` s as it is (requests in
flight are waited for up to the fetch timeout). The browser is restarted after it crashed or
hung, and every `recycle_pages` pages, so its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

from libs import metrics
from services.crawler.fetch import Auth, Fetcher

log = logging.getLogger(__name__)

BLOCKED_TYPES = frozenset({"image", "media", "font"})
# Requests one page may make besides its document; more are aborted.
MAX_SUBREQUESTS = 500
# Beyond the fetch timeout, how long Playwright may take to answer before the browser counts as
# hung (and is killed).
HANG_MARGIN = 15.0
# How long closing a page's context or a browser may take before it is given up (or killed).
CLOSE_TIMEOUT = 5.0
INSTALL_HINT = (
    "install Chromium (Debian/Ubuntu: apt-get install chromium; the Docker image has it) and point "
    "QUAERO_BROWSER_PATH at its executable, or set render: auto or never"
)
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    # Anything Playwright does not intercept goes to a proxy that refuses it.
    "--proxy-server=http://127.0.0.1:1",
    "--proxy-bypass-list=<-loopback>",
    "--js-flags=--max-old-space-size=256",
)


class BrowserUnavailable(Exception):
    """No browser can be started here (the message says why and how to install one)."""


@dataclass
class Rendered:
    html: bytes | None = None
    # A browser failure (a crash, a hang, a page that did not load): retried like a 5xx.
    error: str | None = None
    # The DOM was larger than the body limit.
    too_large: bool = False
    # The wait_for selector did not appear (the DOM as it was is used).
    waited: str = ""
    subrequests: int = 0
    # Where the page was when its DOM was read (history.pushState moves it): links resolve there.
    location: str = ""


# Contexts (sets of credentials) one browser keeps at most; the least recently used idle one goes.
MAX_CONTEXTS = 8

# Times a page that reloads itself while it is being read is read again.
NAVIGATED_RETRIES = 3
# A page has settled after this long with no request in flight, no DOM change and no short timer
# pending (after `load`).
QUIET = 0.15
# Timers the page sets with at most this delay (ms) are waited for, when set within the first
# TIMER_WINDOW_MS of the page: a link drawn after a delay is there. Later ones (a poll, a
# carousel) are not, and a DOM still changing after BUSY_CAP s (a ticking clock) counts as
# settled then: only requests in flight are waited for up to the fetch timeout.
SHORT_TIMER_MS = 1000
TIMER_WINDOW_MS = 5000
BUSY_CAP = 5.0
# Run in every document before its own scripts: notes when the DOM last changed and which short
# timers are pending, and defines __quaeroSettled(quiet, cap), which resolves (with the DOM
# serialized, and where the page is) once the DOM has been quiet for `quiet` ms with no short
# timer pending, or after `cap` ms. Non-writable, so the page's scripts cannot replace them; the
# poll uses the page's original setTimeout, so it is not counted itself.
SETTLE_SCRIPT = """(() => {
  const w = window, setT = w.setTimeout, clearT = w.clearTimeout, now = performance.now.bind(performance);
  let changed = now();
  const pending = new Set();
  w.setTimeout = function (fn, delay, ...args) {
    if (typeof fn !== "function" || !((Number(delay) || 0) <= SHORT_TIMER_MS) || now() > TIMER_WINDOW_MS) {
      return setT.apply(this, arguments);
    }
    const id = setT.call(this, function () { pending.delete(id); return fn.apply(this, arguments); }, delay, ...args);
    pending.add(id);
    return id;
  };
  w.clearTimeout = function (id) { pending.delete(id); return clearT.apply(this, arguments); };
  new MutationObserver(() => { changed = now(); })
    .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  const serialize = () => {
    const doctype = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
    return doctype + (document.documentElement ? document.documentElement.outerHTML : "");
  };
  const settled = (quiet, cap) => new Promise(resolve => {
    const start = now();
    const poll = () => {
      const idle = now() - changed, done = idle >= quiet && pending.size === 0;
      if (done || now() - start >= cap) {
        resolve({ settled: done, html: serialize(), location: location.href });
      } else {
        setT(poll, pending.size ? 20 : Math.max(10, quiet - idle));
      }
    };
    poll();
  });
  Object.defineProperty(w, "__quaeroSettled", { value: settled, writable: false, configurable: false });
})();""".replace("SHORT_TIMER_MS", str(SHORT_TIMER_MS)).replace("TIMER_WINDOW_MS", str(TIMER_WINDOW_MS))


@dataclass
class _Job:
    """What the page is rendering now: its route handler answers from this."""

    document: str
    body: bytes
    content_type: str
    auth: Auth | None
    result: Rendered
    # The page's requests being answered now, and when one last started or ended (monotonic).
    in_flight: int = 0
    active: float = 0.0


class _Context:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.idle: list[Any] = []  # open pages on about:blank, ready for the next render
        self.busy = 0


class _Instance:
    def __init__(self, browser: Any, pid: int | None) -> None:
        self.browser = browser
        self.pid = pid
        self.pages = 0
        self.open = 0
        self.retired = False
        self.contexts: dict[tuple[Any, ...], _Context] = {}
        self.jobs: dict[Any, _Job] = {}  # page -> what it renders now


def _auth_key(auth: Auth | None) -> tuple[Any, ...]:
    if auth is None:
        return ()
    return (auth.origin, tuple(sorted(auth.headers.items())), tuple(sorted(auth.cookies.items())))


def browser_pids(parent: int | None = None) -> set[int]:
    """The Chromium browser processes (not their renderers and helpers) under process `parent`
    (this one by default)."""
    found: set[int] = set()
    try:
        children = psutil.Process(parent or os.getpid()).children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            command = child.cmdline()
            if command and "chrom" in command[0] and not any(a.startswith("--type=") for a in command):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


class BrowserFetcher:
    """Renders pages in one Chromium per process (see the module docstring)."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        path: str,
        pages: int = 4,
        recycle_pages: int = 200,
        timeout: float = 30.0,
        hang_margin: float = HANG_MARGIN,
        busy_cap: float = BUSY_CAP,
    ) -> None:
        self.fetcher = fetcher
        self.busy_cap = busy_cap
        self.hang_margin = hang_margin
        self.path = path
        self.timeout = timeout
        self.recycle_pages = recycle_pages
        self._slots = asyncio.Semaphore(pages)
        self._lock = asyncio.Lock()
        self._playwright: Any = None
        self._current: _Instance | None = None
        self._unavailable: str | None = None
        self.launches = 0
        self.rendered = 0

    def unavailable(self) -> str | None:
        """Why no browser can run here (None when one can, as far as is known)."""
        if self._unavailable is not None:
            return self._unavailable
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            return f"no Chromium at QUAERO_BROWSER_PATH={self.path}: {INSTALL_HINT}"
        return None

    async def close(self) -> None:
        async with self._lock:
            if self._current is not None:
                await self._close_instance(self._current)
                self._current = None
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None

    def browser_pid(self) -> int | None:
        """The pid of the browser process now running, if any."""
        return self._current.pid if self._current is not None else None

    async def _instance(self) -> _Instance:
        async with self._lock:
            current = self._current
            if current is not None and not current.retired and current.browser.is_connected():
                return current
            if current is not None:
                current.retired = True
                if current.open == 0:
                    await self._close_instance(current)
                self._current = None
            why = self.unavailable()
            if why is not None:
                raise BrowserUnavailable(why)
            from playwright.async_api import Error, async_playwright

            try:
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                before = browser_pids()
                browser = await self._playwright.chromium.launch(
                    executable_path=self.path, args=list(CHROMIUM_ARGS), timeout=self.timeout * 1000
                )
            except Error as exc:
                self._unavailable = (
                    f"Chromium at QUAERO_BROWSER_PATH={self.path} does not start ({exc}): {INSTALL_HINT}"
                )
                raise BrowserUnavailable(self._unavailable) from exc
            self.launches += 1
            started = browser_pids() - before
            self._current = _Instance(browser, min(started) if len(started) == 1 else None)
            log.info("browser started (pid %s)", self._current.pid)
            return self._current

    async def _close_instance(self, instance: _Instance) -> None:
        instance.retired = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await instance.browser.close()
                # Closed is not gone: its memory is back only once the process has exited.
                while instance.pid is not None and _alive(instance.pid):  # noqa: ASYNC110 - a process, no event
                    await asyncio.sleep(0.05)
        except Exception:
            _kill(instance.pid)

    async def _done_with(self, instance: _Instance, *, broken: bool) -> None:
        instance.open -= 1
        instance.pages += 1
        if broken or instance.pages >= self.recycle_pages:
            instance.retired = True
        if instance.retired and instance.open == 0:
            async with self._lock:
                if self._current is instance:
                    self._current = None
            await self._close_instance(instance)

    async def render(self, url: str, body: bytes, content_type: str, auth: Auth | None, wait_for: str = "") -> Rendered:
        """The DOM of `url` once its scripts ran, its document answered with `body`.
        BrowserUnavailable when no browser can run here."""
        async with self._slots:
            instance = await self._instance()
            instance.open += 1
            started = time.perf_counter()
            broken = False
            try:
                async with asyncio.timeout(self.timeout + self.hang_margin):
                    result = await self._render(instance, url, body, content_type, auth, wait_for)
            except TimeoutError:
                broken = True
                _kill(instance.pid)
                result = Rendered(error=f"the browser did not answer within {self.timeout + self.hang_margin:g} s")
            except Exception as exc:
                from playwright.async_api import Error

                if not isinstance(exc, Error):
                    raise
                broken = not instance.browser.is_connected()
                what = "the browser crashed" if broken else "rendering failed"
                result = Rendered(error=f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            finally:
                await self._done_with(instance, broken=broken)
            metrics.observe_render(result.error is None, time.perf_counter() - started)
            self.rendered += 1
            return result

    async def _page(self, instance: _Instance, auth: Auth | None) -> tuple[_Context, Any]:
        """An open page of the context for these credentials: an idle one, or a new one."""
        key = _auth_key(auth)
        holder = instance.contexts.pop(key, None)
        if holder is None:
            idle = [k for k, c in instance.contexts.items() if c.busy == 0]
            if len(instance.contexts) >= MAX_CONTEXTS and idle:
                old = instance.contexts.pop(idle[0])
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await old.context.close()
            holder = _Context(
                await instance.browser.new_context(
                    user_agent=self.fetcher.user_agent, service_workers="block", java_script_enabled=True
                )
            )
            await holder.context.add_init_script(SETTLE_SCRIPT)
            with contextlib.suppress(AttributeError):  # WebSockets are never connected
                await holder.context.route_web_socket("**/*", lambda ws: None)
        instance.contexts[key] = holder  # most recently used last
        holder.busy += 1
        if holder.idle:
            return holder, holder.idle.pop()
        try:
            page = await holder.context.new_page()

            async def route(route: Any) -> None:
                job = instance.jobs.get(page)
                if job is None:  # between renders (the page going blank): nothing is fetched
                    with contextlib.suppress(Exception):
                        await route.abort("blockedbyclient")
                    return
                await self._route(route, job)

            await page.route("**/*", route)
        except BaseException:
            holder.busy -= 1
            raise
        return holder, page

    async def _render(
        self, instance: _Instance, url: str, body: bytes, content_type: str, auth: Auth | None, wait_for: str
    ) -> Rendered:
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        result = Rendered()
        holder, page = await self._page(instance, auth)
        job = _Job(_without_fragment(url), body, content_type, auth, result)
        instance.jobs[page] = job
        reusable = False
        try:
            deadline = time.monotonic() + self.timeout
            await page.goto(url, wait_until="load", timeout=self.timeout * 1000)
            if wait_for:
                left = max(0.1, deadline - time.monotonic()) * 1000
                try:
                    await page.wait_for_selector(wait_for, state="attached", timeout=left)
                except PlaywrightTimeout:
                    result.waited = f"{wait_for!r} did not appear within {self.timeout:g} s; the page as it was is used"
                dom, result.location, _ = await self._dom(page, 0.0, 0.0)
            else:
                dom, result.location = await self._settle(page, job, deadline)
            html = dom.encode("utf-8")
            if len(html) > self.fetcher.max_body:
                result.too_large = True
            else:
                result.html = html
            reusable = True
            return result
        finally:
            instance.jobs.pop(page, None)
            holder.busy -= 1
            await self._put_back(holder, page, reusable)

    async def _dom(self, page: Any, quiet: float, cap: float) -> tuple[str, str, bool]:
        """The page's DOM serialized and where the page is, once its DOM was quiet for `quiet`
        seconds with no short timer pending (or after `cap` seconds: then not settled)."""
        from playwright.async_api import Error

        for attempt in range(NAVIGATED_RETRIES + 1):
            try:
                got = await page.evaluate(
                    "([q, c]) => window.__quaeroSettled ? window.__quaeroSettled(q, c) : null",
                    [quiet * 1000, cap * 1000],
                )
                break
            except Error as exc:
                # The page reloaded itself (or went to the same document): read the new one.
                if "context was destroyed" not in str(exc) or attempt == NAVIGATED_RETRIES:
                    raise
                await page.wait_for_load_state("load", timeout=self.timeout * 1000)
        if not isinstance(got, dict):  # the settle script did not run: wait as Playwright does
            with contextlib.suppress(Exception):
                await page.wait_for_load_state("networkidle", timeout=max(cap, 0.1) * 1000)
            return await page.content(), page.url, True
        return str(got["html"]), str(got["location"]), bool(got["settled"])

    async def _settle(self, page: Any, job: _Job, deadline: float) -> tuple[str, str]:
        """The page's DOM and location once it settled (see the module docstring): its DOM quiet
        and no short timer pending (waited for `busy_cap` s at most), and no request in flight for
        QUIET s (waited for until the deadline)."""
        busy_until = min(deadline, time.monotonic() + self.busy_cap)
        while True:
            dom, location, settled = await self._dom(page, QUIET, max(0.0, busy_until - time.monotonic()))
            now = time.monotonic()
            if job.in_flight == 0 and now - job.active >= QUIET:
                if not settled and busy_until >= deadline:
                    job.result.waited = f"the page did not settle within {self.timeout:g} s; the page as it was is used"
                return dom, location
            if now >= deadline:
                job.result.waited = (
                    f"the page's requests were not done within {self.timeout:g} s; the page as it was is used"
                )
                return dom, location
            await asyncio.sleep(min(max(0.02, QUIET - (now - job.active)), deadline - now))

    async def _put_back(self, holder: _Context, page: Any, reusable: bool) -> None:
        """Blank the page (its scripts and timers stop) and keep it for the next render; a page
        that failed, or does not go blank in time, is closed instead."""
        try:
            if reusable:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await page.goto("about:blank")
                holder.idle.append(page)
                return
        except Exception:
            pass
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await page.close()

    async def _route(self, route: Any, job: _Job) -> None:
        document, body, content_type, auth, result = job.document, job.body, job.content_type, job.auth, job.result
        request = route.request
        try:
            if request.is_navigation_request():
                if request.frame.parent_frame is None and _without_fragment(request.url) == document:
                    await route.fulfill(status=200, body=body, headers={"Content-Type": content_type})
                else:  # frames, and the page going somewhere else: not this page's content
                    await route.abort("blockedbyclient")
                return
            if request.resource_type in BLOCKED_TYPES or result.subrequests >= MAX_SUBREQUESTS:
                await route.abort("blockedbyclient")
                return
            result.subrequests += 1
            job.in_flight += 1
            job.active = time.monotonic()
            try:
                answer = await self.fetcher.relay(
                    request.method, request.url, await request.all_headers(), request.post_data_buffer, auth
                )
                if answer is None:
                    await route.abort("addressunreachable")
                    return
                status, headers, content = answer
                await route.fulfill(status=status, headers=headers, body=content)
            finally:
                job.in_flight -= 1
                job.active = time.monotonic()
        except Exception as exc:
            # The page closed meanwhile, or the request was cancelled: nothing to answer.
            log.debug("browser request %s not answered: %s", request.url, exc)
            with contextlib.suppress(Exception):
                await route.abort("failed")


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
