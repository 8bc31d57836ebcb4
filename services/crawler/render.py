"""Rendering pages that need JavaScript in headless Chromium, driven by Playwright (DESIGN 14).

One browser per worker process, started on first need, with at most `pages` pages open at once,
each in a context of its own (no cookie or storage outlives its page). The browser itself never
touches the network: every request it makes is intercepted, and
- the page's own document is answered with the body the HTTP fetch already read (robots.txt,
  politeness, redirects, the content type and the size cap were applied there);
- images, media and fonts are aborted, and so are frames and navigations away from the page;
- every other request (scripts, styles, XHR, fetch) is made by the worker's HTTP fetcher, so the
  fetch guard checks the address it connects to (a denied one is aborted), the source's
  credentials go only to its origin, bodies are capped as for pages, and the browser's own
  cookies never go out (a request outside the interception goes to a dead proxy and fails).
The page is waited for until the network is idle (or the step's `wait_for` selector appears)
within the fetch timeout; then its DOM is what gets parsed. The browser is restarted after it
crashed or hung, and every `recycle_pages` pages, so its memory stays bounded.
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


class _Instance:
    def __init__(self, browser: Any, pid: int | None) -> None:
        self.browser = browser
        self.pid = pid
        self.pages = 0
        self.open = 0
        self.retired = False


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
    ) -> None:
        self.fetcher = fetcher
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

    async def _render(
        self, instance: _Instance, url: str, body: bytes, content_type: str, auth: Auth | None, wait_for: str
    ) -> Rendered:
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        result = Rendered()
        context = await instance.browser.new_context(
            user_agent=self.fetcher.user_agent, service_workers="block", java_script_enabled=True
        )
        try:
            page = await context.new_page()
            document = _without_fragment(url)

            async def route(route: Any) -> None:
                await self._route(route, document, body, content_type, auth, result)

            await context.route("**/*", route)
            with contextlib.suppress(AttributeError):  # WebSockets are never connected
                await context.route_web_socket("**/*", lambda ws: None)
            deadline = time.monotonic() + self.timeout
            await page.goto(url, wait_until="load", timeout=self.timeout * 1000)
            left = max(0.1, deadline - time.monotonic()) * 1000
            try:
                if wait_for:
                    await page.wait_for_selector(wait_for, state="attached", timeout=left)
                else:
                    await page.wait_for_load_state("networkidle", timeout=left)
            except PlaywrightTimeout:
                result.waited = (
                    f"{wait_for!r} did not appear" if wait_for else "the network was not idle"
                ) + f" within {self.timeout:g} s; the page as it was is used"
            html = (await page.content()).encode("utf-8")
            result.location = page.url
            if len(html) > self.fetcher.max_body:
                result.too_large = True
            else:
                result.html = html
            return result
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await context.close()

    async def _route(
        self, route: Any, document: str, body: bytes, content_type: str, auth: Auth | None, result: Rendered
    ) -> None:
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
            answer = await self.fetcher.relay(
                request.method, request.url, await request.all_headers(), request.post_data_buffer, auth
            )
            if answer is None:
                await route.abort("addressunreachable")
                return
            status, headers, content = answer
            await route.fulfill(status=status, headers=headers, body=content)
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
