"""Canonical URLs and scope rules (pure logic)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given, reject, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls as st_urls

from services.crawler.frontier import (
    _ALREADY_CANONICAL,
    Scope,
    _rebuilt,
    canonical_url,
    host_of,
    resolve_link,
    url_key,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/", "https://example.com/"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"),
        ("http://example.com/a?utm_source=x&utm_medium=y&id=3", "http://example.com/a?id=3"),
        ("http://example.com/a?fbclid=1&gclid=2", "http://example.com/a"),
        ("http://example.com/x/../a/./b", "http://example.com/a/b"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://user:secret@example.com/a", "http://example.com/a"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
    ids=[
        "case", "default-port", "https-default-port", "other-port", "empty-path", "fragment", "query-order",
        "utm", "click-ids", "dot-segments", "percent-encoding", "credentials", "not-http",
    ],
)  # fmt: skip
def test_canonical_url(raw: str, canonical: str) -> None:
    assert canonical_url(raw) == canonical


def test_urls_taken_as_already_canonical_are_what_the_full_rebuild_gives() -> None:
    hosts = ["h.test", "docs.example.org", "127.0.0.1", "a-b.c", "H.test", "h.test."]
    ports = ["", ":80", ":443", ":8080", ":080", ":49152", ":59999", ":64999", ":65499", ":65529", ":65535"]
    ports += [":65536", ":99999", ":123456"]  # not ports at all
    paths = [
        "",
        "/",
        "/a",
        "/a/",
        "/a/b.html",
        "/~u/x_y-z",
        "/.hidden",
        "/a/./b",
        "/a/../b",
        "//a",
        "/a%7Eb",
        "/A.HTML",
    ]
    urls = [
        f"{scheme}://{host}{port}{path}"
        for scheme in ("http", "https", "HTTP")
        for host in hosts
        for port in ports
        for path in paths
    ]
    fast = [u for u in urls if _ALREADY_CANONICAL.fullmatch(u)]

    assert len(fast) > 100  # the shortcut applies to the plain ones, and only those
    assert not any(_ALREADY_CANONICAL.fullmatch(u) for u in ("http://h.test", "http://h.test:80/", "http://H.test/"))
    assert [u for u in fast if _rebuilt(u) != u] == []
    assert all(canonical_url(u) == _rebuilt(u) for u in urls)


@given(st_urls() | st.text(max_size=40).map(lambda t: "http://" + t))
def test_the_host_of_a_canonical_url_is_its_netloc(raw: str) -> None:
    """host_of's shortcut (the text between the scheme and the first slash) is urlsplit's netloc
    for every URL canonical_url gives."""
    url = canonical_url(raw)
    if url is not None:
        assert host_of(url) == urlsplit(url).netloc


def test_spellings_of_one_page_share_a_key() -> None:
    spellings = [
        "http://h.test/docs/",
        "HTTP://h.test:80/docs/#top",
        "http://h.test/docs/?utm_campaign=x",
        "http://h.test/a/../docs/",
    ]
    assert len({url_key(canonical_url(s) or "") for s in spellings}) == 1


@pytest.mark.parametrize(
    ("href", "absolute"),
    [
        ("/a", "http://h.test/a"),
        ("b", "http://h.test/dir/b"),
        ("../c", "http://h.test/c"),
        ("//other.test/x", "http://other.test/x"),
        ("https://x.test/", "https://x.test/"),
        ("#top", None),
        ("javascript:void(0)", None),
        ("", None),
    ],
    ids=["root", "relative", "parent", "scheme-relative", "absolute", "fragment", "javascript", "empty"],
)
def test_resolve_link(href: str, absolute: str | None) -> None:
    assert resolve_link("http://h.test/dir/page.html", href) == absolute


def scope(**options) -> Scope:  # type: ignore[no-untyped-def]
    return Scope.build(["http://docs.test/"], **options)


@pytest.mark.parametrize(
    ("options", "url", "depth", "reason"),
    [
        ({}, "http://docs.test/a", 1, None),
        ({}, "http://other.test/a", 1, "offsite"),
        ({}, "http://api.docs.test/a", 1, "offsite"),
        ({"allow_subdomains": True}, "http://api.docs.test/a", 1, None),
        ({"allowed_domains": ["other.test"]}, "http://other.test/a", 1, None),
        ({}, "ftp://docs.test/a", 1, "scheme"),
        ({"max_depth": 2}, "http://docs.test/a", 3, "depth"),
        ({"max_depth": 2}, "http://other.test/a", 3, "offsite"),
        ({"excludes": ["/private/"]}, "http://docs.test/private/x", 1, "pattern"),
        ({"include_sets": [["/docs/"]]}, "http://docs.test/blog/x", 1, "pattern"),
        ({"include_sets": [["/docs/"], ["/v2/"]]}, "http://docs.test/docs/v1/x", 1, "pattern"),
        ({"include_sets": [["/docs/"], ["/v2/"]]}, "http://docs.test/docs/v2/x", 1, None),
        ({"include_sets": [["/docs/"]], "excludes": ["/docs/old"]}, "http://docs.test/docs/old/x", 1, "pattern"),
    ],
    ids=[
        "same-host", "offsite", "subdomain-refused", "subdomain-allowed", "allowed-domain", "scheme", "depth",
        "url-reason-before-depth", "exclude", "include", "both-include-sets-one-fails", "both-include-sets-pass",
        "exclude-wins",
    ],
)  # fmt: skip
def test_scope_reasons(options: dict, url: str, depth: int, reason: str | None) -> None:  # type: ignore[type-arg]
    assert scope(**options).reason(url, depth) == reason


# ------------------------------------------------------------------------- patterns on RE2


def test_a_pattern_that_backtracks_catastrophically_in_re_decides_at_once() -> None:
    # Python's re takes 2^n steps for (a+)+$ on n a's and a mismatch (28 a's: 25 s); RE2 is linear.
    url = "http://docs.test/" + "a" * 64 + "!"

    assert scope(include_sets=[["(a+)+$"]]).reason(url, 1) == "pattern"
    assert scope(excludes=["(a+)+$"]).reason(url[:-1], 1) == "pattern"


def test_a_stored_pattern_re2_cannot_run_puts_every_url_out_of_scope_and_says_why() -> None:
    # A job saved by a release whose patterns ran on Python's re: nothing a pattern was meant to
    # keep out is crawled, and the worker fails the job with `invalid`.
    stored = scope(include_sets=[["/docs/"]], excludes=["/docs/(?!v2/)"])

    assert stored.invalid.startswith("exclude pattern '/docs/(?!v2/)' is not a valid regular expression")
    assert stored.reason("http://docs.test/docs/v2/a", 1) == "pattern"
    assert stored.reason("http://other.test/docs/v2/a", 1) == "offsite"
    assert scope(excludes=["/docs/old/"]).invalid == ""


class _TooSlow(Exception):
    pass


@contextlib.contextmanager
def _cpu_budget(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` of this process's CPU time (Python's re checks for
    signals while it matches). SIGVTALRM, so pytest-timeout's SIGALRM is left alone."""

    def expire(_signum: int, _frame: object) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


# Regular expressions from the syntax Python's re and RE2 share and read alike. Left out: what
# one of them lacks (lookaround, backreferences, \Z, possessive quantifiers: refused at save),
# and what both accept but read differently, as RE2's documented syntax says: `x{,n}` (RE2:
# literal text) and POSIX classes like `[[:alpha:]]` (re: a set of the characters `[:alph`).
_LITERALS = st.sampled_from([*"abdz09", "/", "-", "_", "~", "=", "&", "%", r"\.", r"\?", r"\+", r"\(", "é"])
_ATOMS = st.one_of(
    _LITERALS,
    st.sampled_from([".", r"\d", r"\w", r"\W", r"\D", r"\s", "[a-c]", "[^/]", "[0-9a-f]", "[/.]", "[-_]"]),
)


def _quantified(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    quantifiers = st.sampled_from(["", "", "*", "+", "?", "*?", "+?", "{2}", "{1,3}", "{0,}", "{2,}?"])
    return st.tuples(inner, quantifiers).map("".join)


_REGEX = st.recursive(
    _quantified(_ATOMS),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        _quantified(inner.map(lambda r: f"({r})")),
        _quantified(inner.map(lambda r: f"(?:{r})")),
        st.tuples(st.sampled_from(["^", r"\b", "(?i)", ""]), inner, st.sampled_from(["$", r"\B", ""])).map("".join),
    ),
    max_leaves=8,
)
_PATHS = st.text(alphabet="abdzAB09-._~/%?=&!()*+,;:@é", max_size=30)


@settings(max_examples=400, deadline=None)
@given(
    include_sets=st.lists(st.lists(_REGEX, min_size=1, max_size=3), max_size=2),
    excludes=st.lists(_REGEX, max_size=2),
    path=_PATHS,
)
def test_scope_decides_as_python_re_would_for_patterns_both_accept(
    include_sets: list[list[str]], excludes: list[str], path: str
) -> None:
    patterns = [p for s in include_sets for p in s] + excludes
    try:
        for pattern in patterns:
            re.compile(pattern)
    except re.error:
        reject()
    url = canonical_url("http://docs.test/" + path) or ""
    on_re2 = scope(include_sets=include_sets, excludes=excludes)
    assume(not on_re2.invalid)  # RE2 refuses it (at save): no decision to compare
    on_re = dataclasses.replace(
        on_re2,
        include_sets=tuple(tuple(re.compile(p) for p in s) for s in include_sets),
        excludes=tuple(re.compile(p) for p in excludes),
        _reasons={},
    )
    try:
        with _cpu_budget(0.5):
            expected = on_re.reason(url, 1)
    except _TooSlow:
        reject()  # re does not finish: there is no decision of its to agree with

    assert on_re2.reason(url, 1) == expected
