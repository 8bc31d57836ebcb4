"""Fetching pages and robots.txt: one aiohttp session per process, connections reused per host.

Redirects are not followed here: a 3xx is an answer in itself, and its target goes through the
frontier like any discovered URL (scope, robots, deduplication). Only a redirect back to the same
canonical URL (a tracking parameter added, a fragment) is followed in place.

Every connection goes through the fetch guard (libs.fetch_guard): a URL whose address it refuses
is skipped as `blocked_address`, each redirect target at its own fetch. Bodies are read up to a
cap counted after decompression, which aiohttp does as the body is read, so a compression bomb
never takes more memory than the cap.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from protego import Protego

from libs import metrics
from libs.fetch_guard import FetchGuard, blocked
from libs.step_config import origin
from services.crawler.frontier import (
    BLOCKED_ADDRESS,
    CONTENT_TYPE,
    REDIRECT_LIMIT,
    TOO_LARGE,
    canonical_url,
    hostname_of,
    resolve_link,
)

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Headers of a browser's request not passed on (the session's own, and credentials the browser
# holds: only a source's auth is ever sent), and of an answer not handed back (the body is
# decompressed already; cookies are not kept).
_NOT_RELAYED = frozenset(
    {"host", "cookie", "authorization", "proxy-authorization", "connection", "content-length", "accept-encoding"}
)
_NOT_RETURNED = frozenset({"content-encoding", "content-length", "transfer-encoding", "set-cookie", "connection"})
REDIRECTS = (301, 302, 303, 307, 308)
# robots.txt as Google reads it (and RFC 9309 allows): the first 500 KiB, the rest ignored;
# up to 5 redirects, here only within the same host.
ROBOTS_MAX_BYTES = 500 * 1024
ROBOTS_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Auth:
    """Credentials of a source, sent only to requests for the source's origin: the scheme, host
    and port of its base URL. Never to another host (a redirect, a link off-site), and never in
    clear text to http when the source is https."""

    origin: tuple[str, str, int]
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_source(cls, base_url: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Auth | None:
        """None when the base URL has no http(s) origin: then nothing is sent anywhere."""
        source_origin = origin(base_url)
        return cls(source_origin, headers, cookies) if source_origin is not None else None

    def for_url(self, url: str) -> dict[str, str]:
        if origin(url) != self.origin:
            return {}
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers


@dataclass
class FetchResult:
    status: int = 0
    # Set for a 3xx answer: where it points (absolute, not canonical).
    location: str | None = None
    content_type: str = ""
    charset: str | None = None
    # The body of an HTML answer within the size limit (2xx only).
    body: bytes | None = None
    # content_type, too_large, redirect_limit or blocked_address: not a page we keep.
    skip_reason: str | None = None
    # What the skip reason is about: the content type, the address refused.
    detail: str = ""
    # A network failure (no HTTP answer): retried like a 5xx.
    error: str | None = None
    # Seconds from a Retry-After header.
    retry_after: float | None = None
    # The validators of a 2xx answer, for a conditional request next time.
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Validators:
    """What a stored copy of a page was served with: sent back, a server answers 304 if the page
    has not changed since."""

    etag: str | None
    last_modified: str | None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """GETs pages with a size cap and a timeout, connecting only where the guard allows; never
    stores cookies between requests."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float,
        max_body: int,
        connections: int = 64,
        guard: FetchGuard | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_body = max_body
        self.guard = guard or FetchGuard()
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        """The process's session: every connection it opens goes through the fetch guard."""
        return self._client()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self.guard.connector(limit=self._connections, ttl_dns_cache=300, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # Cookies of one crawl must never reach another: only a source's auth sends any.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.user_agent},
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(
        self,
        url: str,
        auth: Auth | None = None,
        *,
        validators: Validators | None = None,
        max_same_url_redirects: int = 10,
    ) -> FetchResult:
        """GET `url`; HTML bodies are read, anything else is only looked at. With `validators`
        (those a stored copy was served with) the request is conditional: a 304 says the page
        is as stored."""
        target = url
        for _ in range(max_same_url_redirects + 1):
            result = await self._get(target, auth, validators)
            if result.location is None or canonical_url(result.location) != canonical_url(url):
                return result
            target = result.location
        return FetchResult(status=result.status, skip_reason=REDIRECT_LIMIT)

    async def _get(self, url: str, auth: Auth | None, validators: Validators | None) -> FetchResult:
        started = time.perf_counter()
        result = await self._request(url, auth, validators)
        if result.skip_reason != BLOCKED_ADDRESS:  # refused before any request was sent
            metrics.observe_fetch(result.status or None, time.perf_counter() - started)
        return result

    async def _request(self, url: str, auth: Auth | None, validators: Validators | None = None) -> FetchResult:
        headers = auth.for_url(url) if auth else {}
        if validators is not None:
            headers.update(validators.headers())
        try:
            async with self._client().get(url, headers=headers, allow_redirects=False) as response:
                result = FetchResult(status=response.status)
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    result.location = resolve_link(url, location) if location else None
                    return result
                result.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if not 200 <= response.status < 300:
                    return result
                result.content_type = response.content_type
                result.charset = response.charset
                result.etag = response.headers.get("ETag")
                result.last_modified = response.headers.get("Last-Modified")
                declared = response.headers.get("Content-Type")
                if declared and result.content_type not in HTML_TYPES:
                    result.skip_reason, result.detail = CONTENT_TYPE, result.content_type
                    return result
                if response.content_length is not None and response.content_length > self.max_body:
                    result.skip_reason = TOO_LARGE
                    return result
                body, cut = await _read_capped(response, self.max_body)
                if cut:
                    result.skip_reason = TOO_LARGE
                    return result
                if not declared and body.lstrip()[:1] != b"<":
                    result.skip_reason, result.detail = CONTENT_TYPE, result.content_type
                    return result
                result.body = body
                return result
        except (aiohttp.ClientError, TimeoutError, UnicodeError, ValueError) as exc:
            refused = blocked(exc)
            if refused is not None:
                return FetchResult(skip_reason=BLOCKED_ADDRESS, detail=str(refused.strerror))
            return FetchResult(error=f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def relay(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None, auth: Auth | None
    ) -> tuple[int, dict[str, str], bytes] | None:
        """A request a page makes in the browser, made here instead: through the guard, the
        source's credentials only to its origin (the browser's own cookies and credentials never
        go out), redirects handed back to the browser (each target is a request of its own), the
        body capped like a page's. None when it cannot be answered (a refused address, a network
        failure, a body over the cap)."""
        if origin(url) is None:
            return None
        sent = {k: v for k, v in headers.items() if k.lower() not in _NOT_RELAYED and not k.startswith(":")}
        if auth is not None:
            sent.update(auth.for_url(url))
        try:
            async with self._client().request(method, url, headers=sent, data=data, allow_redirects=False) as response:
                if response.content_length is not None and response.content_length > self.max_body:
                    return None
                body, cut = await _read_capped(response, self.max_body)
                if cut:
                    return None
                answer = {k: v for k, v in response.headers.items() if k.lower() not in _NOT_RETURNED}
                return response.status, answer, body
        except (aiohttp.ClientError, TimeoutError, UnicodeError, ValueError):
            return None

    async def robots(self, base: str) -> tuple[int, str]:
        """(status, body) of base/robots.txt (`base` is scheme://host[:port]); status 0 when it
        could not be fetched.

        Redirects are followed up to ROBOTS_MAX_REDIRECTS times within the host (http to https
        included); one to another host, or one too many, leaves robots.txt unavailable (the
        redirect's status, no body: everything is allowed, as for a 404). The body is read up to
        ROBOTS_MAX_BYTES after decompression and the rest ignored, from its last whole line on."""
        url = f"{base}/robots.txt"
        host = hostname_of(url).rstrip(".")
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                async with self._client().get(url, allow_redirects=False) as response:
                    status = response.status
                    if status in REDIRECTS:
                        location = response.headers.get("Location")
                        url = (resolve_link(url, location) if location else None) or ""
                        target = origin(url)
                        if target is None or target[1] != host:
                            return status, ""
                        continue
                    if status != 200:
                        return status, ""
                    body, cut = await _read_capped(response, ROBOTS_MAX_BYTES)
            except (aiohttp.ClientError, TimeoutError, UnicodeError, ValueError):
                return 0, ""
            if cut:
                # A rule cut halfway ("Disallow: /pri") would say more than the file does.
                body = body[: body.rfind(b"\n") + 1]
            return 200, body.decode("utf-8", errors="replace")
        return status, ""


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """The body's first `limit` bytes (decompressed), and whether there was more (then the rest
    is not read: the connection is closed rather than drained)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


@dataclass(frozen=True)
class Robots:
    """A parsed robots.txt: everything is allowed when there is none (4xx, unreachable)."""

    parser: Protego | None
    user_agent: str

    @classmethod
    def parse(cls, status: int, body: str, user_agent: str) -> Robots:
        return cls(Protego.parse(body) if status == 200 and body.strip() else None, user_agent)

    def allowed(self, url: str) -> bool:
        return self.parser is None or bool(self.parser.can_fetch(url, self.user_agent))

    def delay(self) -> float:
        """Crawl-delay in seconds (0 when none)."""
        if self.parser is None:
            return 0.0
        return float(self.parser.crawl_delay(self.user_agent) or 0.0)
