"""Job definitions and sources: the domain model, validation and the post-job cycle check."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from croniter import CroniterBadDateError, croniter

from libs.bounds import json_problems
from libs.errors import FieldViolation
from libs.fetch_guard import FetchGuard
from libs.step_config import check_crawl_options, check_http_url, check_step_config, parse_duration

DEFINITION_TYPES = ("crawler", "summarizer", "custom")
ON_ERROR = ("fail", "continue", "retry")
SOURCE_TYPES = ("web", "jira", "confluence", "github")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ID_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_TIMEOUT = 30 * 24 * 3600.0
# RFC 9110 tokens: what a header (or cookie) name may be.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What a header value must never hold (a CR or LF would start another header), and a cookie value
# besides (a `;` would start another cookie).
_HEADER_VALUE_BAD = re.compile(r"[\r\n\x00]")
_COOKIE_VALUE_BAD = re.compile(r"[\r\n\x00;]")
_NOUN = {"headers": "HTTP header", "cookies": "cookie"}
POST_JOBS_WHEN = ("success", "changed")
WEBHOOK_EVENTS = ("execution.completed", "execution.failed", "documents.changed")
MAX_WEBHOOKS = 10
_SECRET_PREFIX = "whsec_"


@dataclass
class Webhook:
    url: str
    # Empty: every event.
    events: list[str] = field(default_factory=list)
    # Write-only: sent nowhere but into signatures.
    secret: str = ""

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


@dataclass
class Step:
    name: str
    action: str
    config: dict[str, Any] = field(default_factory=dict)
    on_error: str = "fail"


@dataclass
class JobDefinition:
    id: str
    name: str
    type: str
    description: str = ""
    sources: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    schedule: str = ""
    timeout: str = ""
    enabled: bool = True
    auto_start: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    post_jobs: list[str] = field(default_factory=list)
    # success: post-jobs run whenever every step succeeded; changed: only when its crawls found a
    # new, changed or removed document too.
    post_jobs_when: str = "success"
    webhooks: list[Webhook] = field(default_factory=list)
    # Bumped by every change that is stored; auto_start runs once per version.
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def content(self) -> dict[str, Any]:
        """What the user wrote: everything but bookkeeping, to tell a real change from a re-save."""
        return {
            "name": self.name, "type": self.type, "description": self.description, "sources": self.sources,
            "steps": [vars(s) for s in self.steps], "schedule": self.schedule, "timeout": self.timeout,
            "enabled": self.enabled, "auto_start": self.auto_start, "config": self.config, "post_jobs": self.post_jobs,
            "post_jobs_when": self.post_jobs_when, "webhooks": [vars(w) for w in self.webhooks],
        }  # fmt: skip

    @property
    def timeout_seconds(self) -> float | None:
        return parse_duration(self.timeout) if self.timeout else None


@dataclass
class Source:
    id: str
    name: str
    type: str
    base_url: str
    enabled: bool = True
    # Crawl defaults for this source: only the options the user set.
    crawl: dict[str, Any] = field(default_factory=dict)
    include_patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    # Secrets: stored, sent to the crawler in snapshots, never returned by the API.
    auth_headers: dict[str, str] = field(default_factory=dict)
    auth_cookies: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def has_auth(self) -> bool:
        return bool(self.auth_headers or self.auth_cookies)

    def content(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("created_at", "updated_at")}


def check_schedule(expr: str) -> str | None:
    """None if `expr` is a cron schedule we run (5 fields, or 6 with seconds first), else why not."""
    fields = expr.split()
    if expr.startswith("@") or len(fields) == 5:
        ok = croniter.is_valid(expr)
    elif len(fields) == 6:
        ok = croniter.is_valid(expr, second_at_beginning=True)
    else:
        return f"must have 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}"
    if not ok:
        return f"{expr!r} is not a valid cron expression"
    try:
        croniter(expr, datetime.now(UTC), second_at_beginning=len(fields) == 6).get_next(datetime)
    except (CroniterBadDateError, ValueError, OverflowError):
        # e.g. "0 0 31 2 *": valid syntax, but February has no 31st.
        return f"{expr!r} never fires (no date matches it)"
    return None


def find_cycle(start: str, graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The shortest post-job path from `start` back to itself, e.g. [a, b, a]; None if none.

    Unknown ids are dead ends: definitions may be saved in any order.
    """
    parents: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for child in graph.get(node, ()):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child not in seen:
                    seen.add(child)
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    return None


def validate_definition(
    d: JobDefinition,
    *,
    actions: Collection[str],
    known_sources: Collection[str],
    graph: Mapping[str, Sequence[str]] | None,
    guard: FetchGuard | None = None,
) -> list[FieldViolation]:
    """Every problem with `d`, each naming its field. `graph` maps the other stored definitions'
    ids to their post-jobs (None: no cycle check, as when executing: run time skips a post-job
    already in the lineage); `known_sources` are the stored source ids; `guard` refuses webhook
    URLs whose host is an address fetches may not reach (a host name is checked when sending)."""
    content = d.content()
    # A secret is never described: its size is checked below.
    content["webhooks"] = [{"url": w.url, "events": w.events} for w in d.webhooks]
    v: list[FieldViolation] = json_problems({"id": d.id, **content})
    if not d.id:
        v.append(FieldViolation("id", "is required"))
    elif not ID_PATTERN.fullmatch(d.id):
        v.append(FieldViolation("id", _ID_RULE))
    if not d.name.strip():
        v.append(FieldViolation("name", "is required"))
    if not d.type:
        v.append(FieldViolation("type", f"is required (one of {', '.join(DEFINITION_TYPES)})"))
    elif d.type not in DEFINITION_TYPES:
        v.append(FieldViolation("type", f"must be one of {', '.join(DEFINITION_TYPES)}"))
    for i, source_id in enumerate(d.sources):
        if source_id not in known_sources:
            v.append(FieldViolation(f"sources[{i}]", f"source {source_id!r} does not exist"))
    if not d.steps:
        v.append(FieldViolation("steps", "must have at least one step"))
    for i, step in enumerate(d.steps):
        path = f"steps[{i}]"
        if not step.name.strip():
            v.append(FieldViolation(f"{path}.name", "is required"))
        if not step.action:
            v.append(FieldViolation(f"{path}.action", "is required"))
        elif step.action not in actions:
            v.append(
                FieldViolation(
                    f"{path}.action", f"unknown action {step.action!r} (known: {', '.join(sorted(actions))})"
                )
            )
        if step.on_error not in ON_ERROR:
            v.append(FieldViolation(f"{path}.on_error", f"must be one of {', '.join(ON_ERROR)}"))
        v.extend(check_step_config(step.action, step.config, f"{path}.config"))
        if step.action == "crawl" and not d.sources and "start_urls" not in step.config:
            v.append(FieldViolation(f"{path}.config.start_urls", "is required when the definition has no sources"))
    if d.schedule:
        problem = check_schedule(d.schedule)
        if problem:
            v.append(FieldViolation("schedule", problem))
    if d.timeout:
        try:
            seconds = parse_duration(d.timeout)
            if seconds <= 0:
                v.append(FieldViolation("timeout", "must be longer than zero"))
            elif seconds > MAX_TIMEOUT:
                v.append(FieldViolation("timeout", "must be at most 30 days (720h)"))
        except ValueError as exc:
            v.append(FieldViolation("timeout", str(exc)))
    for i, post_job in enumerate(d.post_jobs):
        if not post_job:
            v.append(FieldViolation(f"post_jobs[{i}]", "must not be empty"))
    if d.id and d.post_jobs and graph is not None:
        cycle = find_cycle(d.id, {**graph, d.id: d.post_jobs})
        if cycle:
            v.append(FieldViolation("post_jobs", "cycle " + " -> ".join(cycle)))
    if d.post_jobs_when not in POST_JOBS_WHEN:
        v.append(FieldViolation("post_jobs_when", f"must be one of {', '.join(POST_JOBS_WHEN)}"))
    v.extend(check_webhooks(d.webhooks, guard))
    return v


def check_webhook_secret(secret: str) -> str | None:
    """None if `secret` is a Standard Webhooks secret (whsec_ + base64 of 24-64 bytes), else why
    not. The secret itself is never part of the answer."""
    if not secret:
        return "is required (whsec_ followed by base64 of 24 to 64 random bytes)"
    try:
        key = base64.b64decode(secret.removeprefix(_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return "must be whsec_ followed by base64"
    if not 24 <= len(key) <= 64:
        return f"must hold 24 to 64 bytes once base64-decoded, not {len(key)}"
    return None


def check_webhooks(webhooks: Sequence[Webhook], guard: FetchGuard | None) -> list[FieldViolation]:
    v: list[FieldViolation] = []
    if len(webhooks) > MAX_WEBHOOKS:
        v.append(FieldViolation("webhooks", f"must have at most {MAX_WEBHOOKS} entries, not {len(webhooks)}"))
    for i, hook in enumerate(webhooks):
        path = f"webhooks[{i}]"
        problem = check_http_url(hook.url)
        if problem is None and guard is not None:
            problem = _guard_refusal(hook.url, guard)
        if problem:
            v.append(FieldViolation(f"{path}.url", problem))
        for j, event in enumerate(hook.events):
            if event not in WEBHOOK_EVENTS:
                v.append(FieldViolation(f"{path}.events[{j}]", f"must be one of {', '.join(WEBHOOK_EVENTS)}"))
        if len(set(hook.events)) != len(hook.events):
            v.append(FieldViolation(f"{path}.events", "must not repeat an event"))
        problem = check_webhook_secret(hook.secret)
        if problem:
            v.append(FieldViolation(f"{path}.secret", problem))
    return v


def _guard_refusal(url: str, guard: FetchGuard) -> str | None:
    host = (urlsplit(url.strip()).hostname or "").rstrip(".")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name: the guard checks the address it resolves to on every delivery (no lookup here,
        # where its answer could change before the first delivery anyway).
        return None if host != "localhost" else _why(guard.refusal("127.0.0.1"))
    return _why(guard.refusal(host))


def _why(refusal: str | None) -> str | None:
    return f"is not reachable: its address {refusal}" if refusal else None


def _check_auth(kind: str, values: Mapping[str, str], bad_value: re.Pattern[str]) -> list[FieldViolation]:
    """Header or cookie names must be tokens and their values sendable as they are; a value is a
    secret, so no description repeats it."""
    v: list[FieldViolation] = []
    for name, value in values.items():
        if not _TOKEN.fullmatch(name):
            v.append(FieldViolation(f"auth.{kind}.{name}", f"is not a valid {_NOUN[kind]} name"))
        elif bad_value.search(value):
            forbidden = "CR, LF, NUL or ';'" if kind == "cookies" else "CR, LF or NUL"
            v.append(FieldViolation(f"auth.{kind}.{name}", f"must not contain {forbidden}"))
    return v


def validate_source(s: Source) -> list[FieldViolation]:
    # Credentials are checked on their own below: nothing of theirs goes into a description.
    v = json_problems(
        {
            "id": s.id, "name": s.name, "type": s.type, "base_url": s.base_url, "crawl": s.crawl,
            "filters": {"include_patterns": s.include_patterns, "exclude_patterns": s.exclude_patterns},
        }
    )  # fmt: skip
    if s.id and not ID_PATTERN.fullmatch(s.id):
        v.append(FieldViolation("id", _ID_RULE))
    if not s.name.strip():
        v.append(FieldViolation("name", "is required"))
    if s.type not in SOURCE_TYPES:
        v.append(FieldViolation("type", f"must be one of {', '.join(SOURCE_TYPES)}"))
    problem = check_http_url(s.base_url) if s.base_url else "is required"
    if problem:
        v.append(FieldViolation("base_url", problem))
    v.extend(check_crawl_options(s.crawl, "crawl"))
    v.extend(
        check_crawl_options({"include_patterns": s.include_patterns, "exclude_patterns": s.exclude_patterns}, "filters")
    )
    v.extend(_check_auth("headers", s.auth_headers, _HEADER_VALUE_BAD))
    v.extend(_check_auth("cookies", s.auth_cookies, _COOKIE_VALUE_BAD))
    return v
