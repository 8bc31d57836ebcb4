"""Scope rules of a crawl: canonical URLs and whether a discovered URL is admitted, and if not, why."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url, url_query_cleaner

from libs.patterns import Pattern, PatternError, compile_pattern
from libs.step_config import DEFAULT_PORTS

# Parameters that identify a campaign or a click, not a page.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid", "mc_cid",
        "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
    }
)  # fmt: skip
# Link schemes that are not addresses of documents at all: ignored rather than recorded.
_NOT_LINKS = ("javascript:", "data:", "about:", "blob:")

# Skip reasons (crawl_urls.reason for state "skipped").
ROBOTS = "robots"
DEPTH = "depth"
PATTERN = "pattern"
OFFSITE = "offsite"
BUDGET = "budget"
CONTENT_TYPE = "content_type"
TOO_LARGE = "too_large"
REDIRECT_LIMIT = "redirect_limit"
SCHEME = "scheme"
BLOCKED_ADDRESS = "blocked_address"


# A URL that is its own canonical spelling: http(s), a lower-case host without credentials or a
# trailing dot, no port or a port that is not the default, a path of unreserved characters with
# no empty or dot segments, no query, no fragment. Most links of most sites look like this; they
# skip the parsing (and w3lib's rebuilding) below, which gives the same string for them.
_SEGMENT = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
# 1-65535 without leading zeros (a local server's port is often 5 digits).
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_ALREADY_CANONICAL = re.compile(
    rf"(?:http://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::(?!80(?:/|$)){_PORT})?"
    rf"|https://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::(?!443(?:/|$)){_PORT})?)"
    rf"/(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?"
)


def canonical_url(url: str) -> str | None:
    """The one spelling of `url` the frontier keys on, or None if it is not a usable URL.

    Lower-case scheme and host, no default port, no credentials, no fragment, no tracking
    parameters, sorted query, normalised percent-encoding and dot segments (w3lib)."""
    if _ALREADY_CANONICAL.fullmatch(url):
        return url
    return _rebuilt(url)


def _rebuilt(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return url.strip() if scheme else None
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return None
        port = parts.port
    except ValueError:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    query = parts.query
    if query:
        names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
        drop = [n for n in names if n.lower().startswith("utm_") or n.lower() in TRACKING_PARAMS]
        if drop:
            query = urlsplit(url_query_cleaner("?" + query, drop, remove=True, keep_fragments=False)).query
    rebuilt = urlunsplit((scheme, netloc, parts.path or "/", query, ""))
    return canonicalize_url(rebuilt, keep_fragments=False)


def url_key(canonical: str) -> str:
    """A fixed-size unique key for a canonical URL, however long the URL."""
    return hashlib.sha1(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def host_of(url: str) -> str:
    """host[:port] of a canonical URL: the unit of politeness and of robots.txt."""
    # Called for every link of every page: a canonical http(s) URL always has a path, so its
    # netloc ends at the first slash after the scheme's.
    if url.startswith(("http://", "https://")):
        start = url.find("//") + 2
        end = url.find("/", start)
        if end > 0 and not any(c in url[start:end] for c in "@?#"):
            return url[start:end]
    return urlsplit(url).netloc


def hostname_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def resolve_link(base: str, href: str) -> str | None:
    """`href` made absolute against `base`; None for things that are not links to documents."""
    href = href.strip()
    if not href or href.startswith("#") or href.lower().startswith(_NOT_LINKS):
        return None
    if "://" in href[:12]:
        return href
    if href.startswith("/") and not href.startswith("//"):
        # Only the origin matters: cache on it, so a site's navigation resolves once per process.
        cut = base.find("/", base.find("://") + 3)
        return _join(base if cut < 0 else base[:cut], href)
    return _join(base, href)


@functools.lru_cache(maxsize=65536)
def _join(base: str, href: str) -> str | None:
    try:
        return urljoin(base, href)
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def canonical_link(url: str) -> str | None:
    """canonical_url, cached: the same links appear on page after page."""
    return canonical_url(url)


@dataclass(frozen=True)
class Scope:
    """Everything that decides, from the URL and its depth alone, whether a URL is crawled."""

    hosts: frozenset[str]
    allow_subdomains: bool = False
    # A URL must match at least one pattern of each non-empty include set (step, source filters).
    # Patterns run on RE2 (libs.patterns): linear in the URL, so no pattern stalls a worker.
    include_sets: tuple[tuple[Pattern, ...], ...] = ()
    excludes: tuple[Pattern, ...] = ()
    max_depth: int = 2
    follow_links: bool = True
    # Why the scope cannot be used: a job stored by an older release (whose patterns ran on
    # Python's re) with a pattern RE2 cannot run. Every URL is then out of scope, so nothing a
    # pattern was meant to keep out is crawled, and the worker fails the job with this message.
    invalid: str = ""
    # url -> url_reason: the same links are classified page after page.
    _reasons: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def build(
        cls,
        seeds: Iterable[str],
        *,
        allowed_domains: Iterable[str] = (),
        allow_subdomains: bool = False,
        include_sets: Sequence[Sequence[str]] = (),
        excludes: Iterable[str] = (),
        max_depth: int = 2,
        follow_links: bool = True,
    ) -> Scope:
        hosts = {hostname_of(s) for s in seeds} | {d.strip().lower().rstrip(".") for d in allowed_domains}
        problems: list[str] = []

        def compiled(patterns: Iterable[str], kind: str) -> tuple[Pattern, ...]:
            out = []
            for pattern in patterns:
                try:
                    out.append(compile_pattern(pattern))
                except PatternError as exc:
                    problems.append(f"{kind} pattern {pattern!r} {exc}")
            return tuple(out)

        return cls(
            hosts=frozenset(h for h in hosts if h),
            allow_subdomains=allow_subdomains,
            include_sets=tuple(compiled(s, "include") for s in include_sets if s),
            excludes=compiled(excludes, "exclude"),
            max_depth=max_depth,
            follow_links=follow_links,
            invalid="; ".join(problems),
        )

    def _on_site(self, hostname: str) -> bool:
        if hostname in self.hosts:
            return True
        return self.allow_subdomains and any(hostname.endswith("." + h) for h in self.hosts)

    def url_reason(self, url: str) -> str | None:
        """Why a canonical URL is out of scope whatever its depth (None: in scope).

        Checked in a fixed order, so a URL's reason never depends on the order of discovery."""
        try:
            return self._reasons[url]
        except KeyError:
            pass
        if len(self._reasons) > 100_000:
            self._reasons.clear()
        reason = self._reasons[url] = self._url_reason(url)
        return reason

    def _url_reason(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            return SCHEME
        if not self._on_site((parts.hostname or "").lower()):
            return OFFSITE
        if self.invalid or any(p.search(url) for p in self.excludes):
            return PATTERN
        if any(not any(p.search(url) for p in patterns) for patterns in self.include_sets):
            return PATTERN
        return None

    def reason(self, url: str, depth: int) -> str | None:
        """Why a canonical URL found at `depth` is skipped (None: admitted)."""
        return self.url_reason(url) or (DEPTH if depth > self.max_depth else None)
