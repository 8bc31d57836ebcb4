"""The fetch guard's aiohttp connector against real sites on loopback: what it refuses never
gets a connection (each site's request log shows it), whether the URL holds an IP address or a
name, whatever the name resolves to and however often that changes."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from libs.fetch_guard import FetchGuard, blocked
from tests.support.site import LocalSite


def one_page_site(host: str = "127.0.0.1") -> LocalSite:
    site = LocalSite(host=host)
    site.add("/", f"Home on {host}")
    return site


def deny(*cidrs: str, **options: bool) -> FetchGuard:
    return FetchGuard(deny=tuple(ipaddress.ip_network(c) for c in cidrs), **options)


class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next (ip, port) list of `answers`, whatever the name."""

    def __init__(self, *answers: list[tuple[str, int]]) -> None:
        self._answers: Iterator[list[tuple[str, int]]] = iter(answers)
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        return [
            ResolveResult(hostname=host, host=ip, port=p, family=socket.AF_INET, proto=0, flags=0)
            for ip, p in next(self._answers)
        ]

    async def close(self) -> None:
        pass


async def get(guard: FetchGuard, url: str, resolver: AbstractResolver | None = None, **options: bool) -> str:
    async with (
        aiohttp.ClientSession(connector=guard.connector(resolver=resolver, **options)) as session,
        session.get(url) as response,
    ):
        return await response.text()


async def refusal(guard: FetchGuard, url: str, resolver: AbstractResolver | None = None, **options: bool) -> str:
    """What the guard said, from the error the request raised."""
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await get(guard, url, resolver, **options)
    refused = blocked(caught.value)
    assert refused is not None, caught.value
    return str(refused.strerror)


async def test_an_ip_address_in_the_url_that_the_guard_refuses_is_never_connected_to() -> None:
    async with one_page_site().serve() as site:
        why = await refusal(deny("127.0.0.1/32"), site.url("/"))

    assert why == "127.0.0.1 is refused by QUAERO_FETCH_DENY"
    assert site.requests == []


async def test_a_name_that_resolves_only_to_refused_addresses_is_refused() -> None:
    async with one_page_site().serve() as site:
        why = await refusal(FetchGuard(block_private=True), f"http://localhost:{site.port}/")

    assert why == "localhost resolves to 127.0.0.1, which is not a public address (QUAERO_BLOCK_PRIVATE_NETWORKS)"
    assert site.requests == []


async def test_of_the_addresses_a_name_resolves_to_only_the_allowed_ones_are_connected_to() -> None:
    async with one_page_site("127.0.0.2").serve() as internal, one_page_site().serve() as public:
        resolver = ScriptedResolver([("127.0.0.2", internal.port), ("127.0.0.1", public.port)])
        body = await get(deny("127.0.0.2/32"), "http://both.test/", resolver)

    assert "Home on 127.0.0.1" in body
    assert internal.requests == []


async def test_a_name_that_resolves_elsewhere_the_second_time_is_checked_again() -> None:
    # DNS rebinding: the guard checks the address each connection goes to, not an earlier lookup.
    async with one_page_site("127.0.0.2").serve() as internal, one_page_site().serve() as public:
        resolver = ScriptedResolver([("127.0.0.1", public.port)], [("127.0.0.2", internal.port)])
        guard = deny("127.0.0.2/32")
        first = await get(guard, "http://rebind.test/", resolver, use_dns_cache=False)
        why = await refusal(guard, "http://rebind.test/", resolver, use_dns_cache=False)

    assert "Home on 127.0.0.1" in first
    assert why == "rebind.test resolves to 127.0.0.2, which is refused by QUAERO_FETCH_DENY"
    assert resolver.lookups == 2
    assert internal.requests == []


async def test_an_allowed_range_opens_a_private_address_when_private_networks_are_blocked() -> None:
    guard = FetchGuard(block_private=True, allow=(ipaddress.ip_network("127.0.0.1/32"),))
    async with one_page_site().serve() as site:
        body = await get(guard, site.url("/"))

    assert "Home on 127.0.0.1" in body


def test_cloud_metadata_gets_no_socket_by_default() -> None:
    # Called directly, as aiohttp would: were the guard to fail, a request through it would reach
    # the real metadata service of the machine running the tests.
    addr_info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("169.254.169.254", 80))

    with pytest.raises(OSError) as caught:
        FetchGuard().socket_factory(addr_info)

    assert blocked(caught.value) is not None
    assert caught.value.strerror == "169.254.169.254 is a link-local or cloud metadata address (always refused)"


async def test_a_connection_that_fails_on_its_own_is_not_a_refusal() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: the connection is refused
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await get(FetchGuard(), f"http://127.0.0.1:{port}/")

    assert blocked(caught.value) is None
