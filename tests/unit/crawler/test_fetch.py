"""Fetch helpers: Retry-After, robots.txt, where credentials may go (pure logic)."""

from __future__ import annotations

import email.utils
import time

import pytest

from services.crawler.fetch import Auth, Robots, parse_retry_after


@pytest.mark.parametrize(("value", "seconds"), [("3", 3.0), (None, None), ("soon", None), ("", None)])
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert 25 <= (parse_retry_after(later) or 0) <= 31


def test_robots_rules_and_crawl_delay() -> None:
    robots = Robots.parse(200, "User-agent: *\nDisallow: /private/\nCrawl-delay: 1.5\n", "Quaero/0.1")

    assert robots.allowed("http://h.test/public/a")
    assert not robots.allowed("http://h.test/private/a")
    assert robots.delay() == 1.5


@pytest.mark.parametrize("status", [404, 0, 500], ids=["missing", "unreachable", "server-error"])
def test_without_a_robots_txt_everything_is_allowed(status: int) -> None:
    robots = Robots.parse(status, "", "Quaero/0.1")

    assert robots.allowed("http://h.test/anything")
    assert robots.delay() == 0.0


CREDENTIALS = {"Authorization": "Bearer t", "Cookie": "session=s; x=1"}


@pytest.mark.parametrize(
    ("base_url", "url", "sent"),
    [
        ("https://docs.test/", "https://docs.test/page", True),
        ("https://docs.test/guide/", "https://DOCS.test./other?q=1", True),
        ("https://docs.test/", "https://docs.test:443/page", True),
        ("http://docs.test:80/", "http://docs.test/page", True),
        ("http://[::1]:8080/", "http://[::1]:8080/page", True),
        ("https://docs.test/", "https://other.test/page", False),
        ("https://docs.test/", "https://api.docs.test/page", False),
        ("https://docs.test/", "http://docs.test/page", False),
        ("http://docs.test/", "https://docs.test/page", False),
        ("https://docs.test/", "https://docs.test:8443/page", False),
        ("http://docs.test:8080/", "http://docs.test:8081/page", False),
        ("http://[::1]:8080/", "http://[::2]:8080/page", False),
        ("https://docs.test/", "https://docs.test@evil.test/page", False),
        ("https://docs.test/", "https://evil.test/?u=https://docs.test/", False),
    ],
    ids=[
        "same-origin",
        "host-case-and-trailing-dot",
        "explicit-https-port",
        "explicit-http-port",
        "ipv6",
        "other-host",
        "subdomain",
        "https-source-http-request",
        "http-source-https-request",
        "other-port",
        "other-port-http",
        "other-ipv6",
        "user-info-trick",
        "host-in-query",
    ],
)
def test_credentials_go_only_to_the_scheme_host_and_port_of_the_source(base_url: str, url: str, sent: bool) -> None:
    auth = Auth.for_source(base_url, {"Authorization": "Bearer t"}, {"session": "s", "x": "1"})

    assert auth is not None
    assert auth.for_url(url) == (CREDENTIALS if sent else {})


@pytest.mark.parametrize("base_url", ["", "ftp://docs.test/", "not a url", "http://[::1/"])
def test_a_source_without_an_http_origin_sends_credentials_nowhere(base_url: str) -> None:
    assert Auth.for_source(base_url, {"Authorization": "Bearer t"}, {}) is None
