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


def test_credentials_go_to_the_source_host_only() -> None:
    auth = Auth(hostname="docs.test", headers={"Authorization": "Bearer t"}, cookies={"session": "s", "x": "1"})

    assert auth.for_url("https://docs.test/page") == {"Authorization": "Bearer t", "Cookie": "session=s; x=1"}
    assert auth.for_url("https://other.test/page") == {}
    assert auth.for_url("https://api.docs.test/page") == {}
