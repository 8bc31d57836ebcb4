"""Which addresses the fetch guard refuses (pure logic; the connector is tested against a real
site in tests/integration/libs/test_fetch_guard.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.fetch_guard import FetchGuard


def nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


OPEN = FetchGuard()
CLOSED = FetchGuard(block_private=True)


@pytest.mark.parametrize(
    ("guard", "address", "refused"),
    [
        (OPEN, "93.184.215.14", False),
        (OPEN, "127.0.0.1", False),
        (OPEN, "10.1.2.3", False),
        (OPEN, "::1", False),
        (OPEN, "169.254.169.254", True),
        (OPEN, "169.254.0.1", True),
        (OPEN, "fe80::1", True),
        (OPEN, "fe80::1%eth0", True),
        (OPEN, "fd00:ec2::254", True),
        (OPEN, "::ffff:169.254.169.254", True),
        (OPEN, "not-an-address", True),
        (CLOSED, "93.184.215.14", False),
        (CLOSED, "2606:4700::1111", False),
        (CLOSED, "127.0.0.1", True),
        (CLOSED, "127.8.9.10", True),
        (CLOSED, "::1", True),
        (CLOSED, "0.0.0.0", True),
        (CLOSED, "10.1.2.3", True),
        (CLOSED, "172.16.0.1", True),
        (CLOSED, "192.168.1.1", True),
        (CLOSED, "100.64.0.1", True),
        (CLOSED, "fd12:3456::1", True),
        (CLOSED, "224.0.0.1", True),
        (CLOSED, "::ffff:10.0.0.1", True),
        (CLOSED, "64:ff9b::a00:1", True),
        (FetchGuard(block_private=True, allow=nets("10.1.0.0/16")), "10.1.2.3", False),
        (FetchGuard(block_private=True, allow=nets("10.1.0.0/16")), "10.2.0.1", True),
        (FetchGuard(allow=nets("169.254.0.0/16")), "169.254.169.254", True),
        (FetchGuard(deny=nets("127.0.0.1/32")), "127.0.0.1", True),
        (FetchGuard(deny=nets("127.0.0.1/32")), "127.0.0.2", False),
        (FetchGuard(deny=nets("127.0.0.1/32")), "::ffff:127.0.0.1", True),
        (FetchGuard(deny=nets("93.184.0.0/16"), allow=nets("93.184.215.0/24")), "93.184.215.14", True),
    ],
    ids=[
        "public", "loopback-allowed-by-default", "private-allowed-by-default", "ipv6-loopback-by-default",
        "metadata", "link-local", "ipv6-link-local", "ipv6-link-local-with-zone", "aws-ipv6-metadata",
        "mapped-metadata", "not-an-ip", "blocked-public", "blocked-public-ipv6", "blocked-loopback",
        "blocked-loopback-range", "blocked-ipv6-loopback", "blocked-unspecified", "blocked-10", "blocked-172",
        "blocked-192", "blocked-shared-cgnat", "blocked-ipv6-unique-local", "blocked-multicast",
        "blocked-mapped-private", "blocked-nat64-private", "allowed-range", "outside-allowed-range",
        "allow-never-opens-metadata", "denied", "next-to-denied", "denied-mapped", "deny-wins-over-allow",
    ],
)  # fmt: skip
def test_which_addresses_are_refused(guard: FetchGuard, address: str, refused: bool) -> None:
    assert (guard.refusal(address) is not None) is refused


_IPV4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_IPV6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_NETWORKS = st.lists(
    st.one_of(
        st.tuples(_IPV4, st.integers(0, 32)).map(lambda a: ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False)),
        st.tuples(_IPV6, st.integers(0, 128)).map(lambda a: ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False)),
    ),
    max_size=3,
)
_GUARDS = st.builds(FetchGuard, st.booleans(), _NETWORKS.map(tuple), _NETWORKS.map(tuple))


@given(guard=_GUARDS, host=st.integers(0, 2**16 - 1), v6=st.booleans())
def test_link_local_and_metadata_addresses_are_refused_whatever_the_settings(
    guard: FetchGuard, host: int, v6: bool
) -> None:
    address = ipaddress.ip_address(f"fe80::{host:x}" if v6 else f"169.254.{host >> 8}.{host & 255}")
    allowing_everything = FetchGuard(guard.block_private, (*guard.allow, *nets("0.0.0.0/0", "::/0")), guard.deny)

    assert guard.refusal(str(address)) is not None
    assert allowing_everything.refusal(str(address)) is not None


@given(guard=_GUARDS, address=_IPV4)
def test_an_ipv4_mapped_ipv6_address_is_judged_as_its_ipv4_address(
    guard: FetchGuard, address: ipaddress.IPv4Address
) -> None:
    assert guard.refusal(f"::ffff:{address}") == guard.refusal(str(address))


@given(guard=_GUARDS, address=st.one_of(_IPV4, _IPV6))
def test_a_denied_address_is_refused_even_when_allowed(
    guard: FetchGuard, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    exact = ipaddress.ip_network(address)
    both = FetchGuard(guard.block_private, (*guard.allow, exact), (*guard.deny, exact))

    assert both.refusal(str(address)) is not None
