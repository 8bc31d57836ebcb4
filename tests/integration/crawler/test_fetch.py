"""The fetcher against real sites on loopback: how robots.txt is read (its size cap, its
redirects) and what the fetch guard refuses, with each site's request log as the witness."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from libs.fetch_guard import FetchGuard
from services.crawler.fetch import ROBOTS_MAX_BYTES, Fetcher, Robots
from tests.support.site import LocalSite, Page


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(user_agent="Quaero-test", timeout=10, max_body=1 << 20)
    try:
        yield f
    finally:
        await f.close()


def robots_page(text: str) -> Page:
    return Page(body=text.encode(), content_type="text/plain")


def redirect(location: str) -> Page:
    return Page(status=302, headers={"Location": location})


async def test_robots_txt_is_read_up_to_500_kib_and_up_to_its_last_whole_line(fetcher: Fetcher) -> None:
    head = "User-agent: *\nDisallow: /early/\n"
    # Padding so that the first 500 KiB end halfway through a rule, right after "Disallow: /":
    # kept, that fragment would disallow everything.
    pad = ROBOTS_MAX_BYTES - len("Disallow: /") - len(head)
    padding = ("#" + "x" * 98 + "\n") * (pad // 100) + "#" * (pad % 100 - 1) + "\n"
    text = head + padding + "Disallow: /late/\n" * 1000
    site = LocalSite(pages={"/robots.txt": robots_page(text)})
    async with site.serve():
        status, body = await fetcher.robots(site.base)

    robots = Robots.parse(status, body, "Quaero-test")
    assert (status, body) == (200, head + padding)
    assert not robots.allowed(site.url("/early/a.html"))
    assert robots.allowed(site.url("/late/a.html"))
    assert robots.allowed(site.url("/other.html"))


async def test_robots_txt_redirects_are_followed_within_the_host(fetcher: Fetcher) -> None:
    site = LocalSite(pages={"/robots.txt": redirect("/robots-2.txt"), "/robots-2.txt": redirect("/real.txt")})
    site.pages["/real.txt"] = robots_page("User-agent: *\nDisallow: /private/\n")
    async with site.serve():
        status, body = await fetcher.robots(site.base)

    assert not Robots.parse(status, body, "Quaero-test").allowed(site.url("/private/a.html"))
    assert [p for _, p in site.requests] == ["/robots.txt", "/robots-2.txt", "/real.txt"]


async def test_a_robots_txt_redirect_to_another_host_is_not_followed(fetcher: Fetcher) -> None:
    elsewhere = LocalSite(pages={"/robots.txt": robots_page("User-agent: *\nDisallow: /\n")})
    async with elsewhere.serve():
        # Another host name for the same machine: a different host, whatever it resolves to.
        site = LocalSite(pages={"/robots.txt": redirect(f"http://localhost:{elsewhere.port}/robots.txt")})
        async with site.serve():
            status, body = await fetcher.robots(site.base)

    assert (status, body) == (302, "")
    assert Robots.parse(status, body, "Quaero-test").allowed(site.url("/anything"))
    assert elsewhere.requests == []


async def test_a_robots_txt_redirect_loop_stops_after_five_redirects(fetcher: Fetcher) -> None:
    site = LocalSite(pages={"/robots.txt": redirect("/robots.txt?again")})
    site.pages["/robots.txt?again"] = redirect("/robots.txt")
    async with site.serve():
        status, body = await fetcher.robots(site.base)

    assert (status, body) == (302, "")
    assert len(site.requests) == 6  # the first request and five redirects


async def test_the_guard_refuses_robots_txt_and_pages_before_any_request() -> None:
    guarded = Fetcher(
        user_agent="Quaero-test",
        timeout=10,
        max_body=1 << 20,
        guard=FetchGuard(deny=(ipaddress.ip_network("127.0.0.1"),)),
    )
    site = LocalSite()
    site.add("/", "Home")
    try:
        async with site.serve():
            robots = await guarded.robots(site.base)
            page = await guarded.fetch(site.url("/"))
    finally:
        await guarded.close()

    assert robots == (0, "")
    assert (page.skip_reason, page.detail) == ("blocked_address", "127.0.0.1 is refused by QUAERO_FETCH_DENY")
    assert site.requests == []
