"""Step configuration: durations, the retry policy and crawl options, checked the same way by the
executor (when a definition is saved) and the crawler (when a step runs)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from libs.errors import FieldViolation
from libs.patterns import PatternError, compile_pattern
from quaero.v1 import crawl_job_pb2

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a Go-style string: "500ms", "2m", "1h30m", "1.5s"."""
    if isinstance(value, bool):
        raise ValueError('must be a number of seconds or a duration such as "30s" or "5m"')
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError("must be a finite number of seconds")
        if seconds < 0:
            raise ValueError("must not be negative")
        return seconds
    if isinstance(value, str):
        text = value.strip()
        if text and _DURATION_PART.sub("", text) == "":
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    raise ValueError(f'{value!r} is not a duration such as "30s", "5m" or "1h30m"')


@dataclass(frozen=True)
class RetryPolicy:
    """How `on_error: retry` re-runs a step: `max_retries` more attempts, exponential backoff."""

    max_retries: int = 3
    initial_backoff: float = 2.0
    max_backoff: float = 60.0
    backoff_multiplier: float = 2.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): from 0 to max_backoff, whatever
        the numbers (a policy stored before its ranges were checked may hold any)."""
        cap = self.max_backoff if math.isfinite(self.max_backoff) and self.max_backoff > 0 else 0.0
        try:
            raw = self.initial_backoff * self.backoff_multiplier ** max(retry - 1, 0)
        except (OverflowError, ZeroDivisionError):
            return cap
        if isinstance(raw, complex) or math.isnan(raw):
            return cap
        return float(min(max(raw, 0.0), cap))


RETRY_KEYS = ("max_retries", "initial_backoff", "max_backoff", "backoff_multiplier")
# The documented ranges of the retry policy (DESIGN 11).
MAX_RETRIES = 100
MAX_BACKOFF = 24 * 3600.0
BACKOFF_MULTIPLIER = (1.0, 10.0)


def is_whole_number(value: Any, low: int, high: int) -> bool:
    """An int (or an integral float: a Struct's numbers are doubles) from `low` to `high`; never
    a bool, NaN or an infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not value.is_integer():
        return False
    return low <= value <= high


def parse_retry_policy(config: dict[str, Any], path: str = "config") -> tuple[RetryPolicy, list[FieldViolation]]:
    violations: list[FieldViolation] = []
    values: dict[str, Any] = {}
    raw = config.get("max_retries")
    if raw is not None:
        if is_whole_number(raw, 0, MAX_RETRIES):
            values["max_retries"] = int(raw)
        else:
            violations.append(FieldViolation(f"{path}.max_retries", f"must be a whole number from 0 to {MAX_RETRIES}"))
    for key in ("initial_backoff", "max_backoff"):
        if config.get(key) is not None:
            try:
                seconds = parse_duration(config[key])
            except ValueError as exc:
                violations.append(FieldViolation(f"{path}.{key}", str(exc)))
                continue
            if seconds <= MAX_BACKOFF:
                values[key] = seconds
            else:
                violations.append(FieldViolation(f"{path}.{key}", "must be at most 24h"))
    raw = config.get("backoff_multiplier")
    if raw is not None:
        low, high = BACKOFF_MULTIPLIER
        if not isinstance(raw, bool) and isinstance(raw, int | float) and low <= raw <= high:
            values["backoff_multiplier"] = float(raw)
        else:
            violations.append(
                FieldViolation(f"{path}.backoff_multiplier", f"must be a number from {low:g} to {high:g}")
            )
    return RetryPolicy(**values), violations


# What the CrawlConfig message cannot say about its fields: the documented range of each number
# (DESIGN 11), and which lists hold host names (the others hold regular expressions).
CRAWL_RANGES = {
    "max_depth": (0, 100),
    "max_pages": (1, 10_000_000),
    "concurrency": (1, 1_000),
    "rate_limit": (0, 3_600_000),
}
_HOST_LISTS = {"allowed_domains"}
# The string options: a choice among words (the first is the default), or a CSS selector.
RENDER_MODES = ("never", "auto", "always")
CRAWL_CHOICES = {"sitemap": ("include", "skip", "only"), "render": RENDER_MODES}
_SELECTORS = {"wait_for"}
MAX_SELECTOR = 1000


def _crawl_options() -> dict[str, str]:
    """Crawl options, name -> kind ("int", "bool", "choice", "regexes", "hosts"): the fields of the
    CrawlConfig message, so a field added there is accepted and checked in a step's config."""
    options: dict[str, str] = {}
    for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields:
        if f.is_repeated and f.type == f.TYPE_STRING:
            options[f.name] = "hosts" if f.name in _HOST_LISTS else "regexes"
        elif f.type == f.TYPE_BOOL:
            options[f.name] = "bool"
        elif f.type == f.TYPE_STRING and f.name in CRAWL_CHOICES:
            options[f.name] = "choice"
        elif f.type in (f.TYPE_INT32, f.TYPE_INT64, f.TYPE_UINT32, f.TYPE_UINT64) and f.name in CRAWL_RANGES:
            options[f.name] = "int"
        elif f.type == f.TYPE_STRING and f.name in _SELECTORS:
            options[f.name] = "selector"
        else:
            raise TypeError(f"CrawlConfig.{f.name}: no check (or no range) for this field in libs/step_config.py")
    return options


def clamp_crawl_option(key: str, value: Any) -> int | None:
    """The whole-number option `key` brought into its documented range (for rows stored before the
    ranges were checked at save); None for what is no number at all."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    low, high = CRAWL_RANGES[key]
    return int(min(max(value, low), high))


# Defaults live with the crawler (CrawlConfig docs).
CRAWL_OPTIONS = _crawl_options()
CRAWL_STEP_KEYS = {
    *CRAWL_OPTIONS,
    "start_urls",
    "wait_for_completion",
    "refresh_source",
    # Read by the Go system's executor; accepted so its definition files load, and ignored.
    "polling_timeout_seconds",
}
ACTION_KEYS: dict[str, set[str]] = {
    "crawl": CRAWL_STEP_KEYS,
    "corpus_summary": {"source_id", "source_ids", "documents"},
    "reindex": {"dry_run", "documents"},
    "reextract": {"source_id", "source_ids", "dry_run"},
}
# `documents` of corpus_summary and reindex: every document, or only the new and changed ones of
# the parent execution's crawls (a post-job's; the executor adds PARENT_CRAWL_JOB_IDS to the
# config it sends, a key no definition may set).
DOCUMENTS_CHOICES = ("all", "parent_changes")
PARENT_CRAWL_JOB_IDS = "parent_crawl_job_ids"


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the default port filled in; None for anything else
    (a URL that does not parse is never the same origin as anything).

    urlsplit().hostname lower-cases the host, drops user info and the brackets of an IPv6 literal."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def check_http_url(value: Any) -> str | None:
    """None if `value` is an absolute http(s) URL with a host, else why not."""
    if not isinstance(value, str) or not value.strip():
        return "must be a URL string"
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:  # an unclosed [IPv6] host
        return f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must include a host"
    return None


def check_selector(value: Any) -> str | None:
    """None if `value` is a CSS selector (as lexbor, the parser of every page, reads one), else why
    not. The empty string means none."""
    if not isinstance(value, str):
        return "must be a CSS selector string"
    if value == "":
        return None
    if len(value) > MAX_SELECTOR:
        return f"must be at most {MAX_SELECTOR} characters"
    if not value.strip() or any(ord(c) < 32 for c in value):
        return "must be a CSS selector such as #content or main article"
    try:
        LexborHTMLParser("").css(value)
    except (SelectolaxError, ValueError) as exc:
        return f"is not a CSS selector: {exc}"
    return None


def check_crawl_options(config: dict[str, Any], path: str) -> list[FieldViolation]:
    """Type and range checks for the crawl options present in `config`."""
    violations: list[FieldViolation] = []
    for key, kind in CRAWL_OPTIONS.items():
        if key not in config or config[key] is None:
            continue
        value, fpath = config[key], f"{path}.{key}"
        if kind == "int":
            low, high = CRAWL_RANGES[key]
            if not is_whole_number(value, low, high):
                violations.append(FieldViolation(fpath, f"must be a whole number from {low} to {high:,}"))
        elif kind == "bool":
            if not isinstance(value, bool):
                violations.append(FieldViolation(fpath, "must be true or false"))
        elif kind == "choice":
            choices = CRAWL_CHOICES[key]
            if value not in choices:
                violations.append(FieldViolation(fpath, f"must be one of {', '.join(choices)}"))
        elif kind == "selector":
            problem = check_selector(value)
            if problem:
                violations.append(FieldViolation(fpath, problem))
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                violations.append(FieldViolation(fpath, "must be a list of strings"))
                continue
            for i, item in enumerate(value):
                if kind == "regexes":
                    try:
                        compile_pattern(item)
                    except PatternError as exc:
                        violations.append(FieldViolation(f"{fpath}[{i}]", str(exc)))
                elif not re.fullmatch(r"[A-Za-z0-9.-]+", item.strip()):
                    violations.append(FieldViolation(f"{fpath}[{i}]", "must be a host name such as docs.example.com"))
    return violations


def check_step_config(action: str, config: dict[str, Any], path: str) -> list[FieldViolation]:
    """Every problem with one step's config: unknown keys, types, ranges, regexes, URLs."""
    violations: list[FieldViolation] = []
    known = ACTION_KEYS.get(action, set()) | set(RETRY_KEYS)
    for key in config:
        # Actions added to the crawler later may take options this release does not know.
        if action in ACTION_KEYS and key not in known:
            choices = ", ".join(sorted(known))
            violations.append(
                FieldViolation(f"{path}.{key}", f"is not an option of the {action} action (known: {choices})")
            )
    _, retry_violations = parse_retry_policy(config, path)
    violations.extend(retry_violations)
    if "documents" in config and action in ACTION_KEYS and config["documents"] not in DOCUMENTS_CHOICES:
        violations.append(FieldViolation(f"{path}.documents", f"must be one of {', '.join(DOCUMENTS_CHOICES)}"))
    if action != "crawl":
        return violations
    violations.extend(check_crawl_options(config, path))
    for key in ("wait_for_completion", "refresh_source"):
        if key in config and not isinstance(config[key], bool):
            violations.append(FieldViolation(f"{path}.{key}", "must be true or false"))
    if "start_urls" in config:
        urls = config["start_urls"]
        if not isinstance(urls, list) or not urls:
            violations.append(FieldViolation(f"{path}.start_urls", "must be a non-empty list of URLs"))
        else:
            for i, url in enumerate(urls):
                problem = check_http_url(url)
                if problem:
                    violations.append(FieldViolation(f"{path}.start_urls[{i}]", problem))
    return violations
