"""The fetch guard: which network addresses outgoing HTTP requests may connect to, checked on the
address each connection actually goes to.

Every fetch (pages, redirects, robots.txt, sitemaps, webhooks) goes through an aiohttp connector
made by `FetchGuard.connector()`. Two hooks of that connector check addresses:
- its resolver drops the addresses a host name resolves to that the guard refuses, so aiohttp
  only ever tries the others, and refuses the host when none is left;
- its socket factory checks the address of every socket aiohttp opens, the IP literals in URLs
  included (aiohttp does not ask the resolver about those).
There is no lookup of its own before the request: the address checked is the address connected
to, so DNS rebinding (a name that answers differently the second time) does not get around it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

if TYPE_CHECKING:
    from libs.settings import CommonSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local addresses and the cloud metadata services on them (169.254.169.254, and AWS's
# fd00:ec2::254) hand out credentials to whoever asks from the machine: never fetched.
ALWAYS_REFUSED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)
# IPv6 addresses that stand for an IPv4 one: a NAT64 gateway (RFC 6052's well-known prefix)
# connects to the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(OSError):
    """A connection the guard refused. An OSError, so aiohttp reports it as the connection
    failure it is (a ClientConnectorError whose `os_error` is this)."""

    def __init__(self, host: str, address: str, why: str) -> None:
        message = f"{host} resolves to {address}, which {why}" if host != address else f"{address} {why}"
        super().__init__(errno.EACCES, message)


def blocked(exc: BaseException) -> BlockedAddress | None:
    """The guard's refusal behind an error raised by a request, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain aiohttp builds is short; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, BlockedAddress):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


@dataclass(frozen=True)
class FetchGuard:
    """Which addresses fetches may connect to: link-local and metadata addresses never; with
    `block_private`, only public ones; `deny` refuses more, `allow` lets private ranges through
    (`deny` wins over `allow`; neither overrides ALWAYS_REFUSED)."""

    block_private: bool = False
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> FetchGuard:
        return cls(settings.block_private_networks, tuple(settings.fetch_allow), tuple(settings.fetch_deny))

    def refusal(self, address: str) -> str | None:
        """Why a connection to `address` (an IP address, as a resolver gives it) is refused;
        None when it is allowed. Something that is not an IP address is refused."""
        try:
            ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) aside
        except ValueError:
            return "is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
            elif ip in _NAT64:
                ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if _within(ip, ALWAYS_REFUSED):
            return "is a link-local or cloud metadata address (always refused)"
        if _within(ip, self.deny):
            return "is refused by QUAERO_FETCH_DENY"
        if _within(ip, self.allow):
            return None
        if self.block_private and (not ip.is_global or ip.is_multicast):
            return "is not a public address (QUAERO_BLOCK_PRIVATE_NETWORKS)"
        return None

    def resolver(self, inner: AbstractResolver | None = None) -> AbstractResolver:
        """A resolver that answers only the addresses the guard allows (`inner` resolves)."""
        return _GuardedResolver(self, inner or aiohttp.DefaultResolver())

    def socket_factory(self, addr_info: Any) -> socket.socket:
        """aiohttp's socket_factory: a socket for `addr_info`, if the guard allows its address."""
        family, type_, proto, _, sockaddr = addr_info
        why = self.refusal(sockaddr[0])
        if why is not None:
            raise BlockedAddress(sockaddr[0], sockaddr[0], why)
        return socket.socket(family=family, type=type_, proto=proto)

    def connector(self, *, resolver: AbstractResolver | None = None, **options: Any) -> aiohttp.TCPConnector:
        """A TCPConnector (options as aiohttp's) that connects only where the guard allows.
        Made inside the event loop, like any aiohttp connector."""
        return aiohttp.TCPConnector(resolver=self.resolver(resolver), socket_factory=self.socket_factory, **options)


def _within(ip: Address, networks: Iterable[Network]) -> bool:
    # An IPv4 address is never inside an IPv6 network (nor the reverse): `in` says False.
    return any(ip in network for network in networks)


class _GuardedResolver(AbstractResolver):
    def __init__(self, guard: FetchGuard, inner: AbstractResolver) -> None:
        self._guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if self._guard.refusal(a["host"]) is None]
        if not allowed and answers:
            first = answers[0]["host"]
            raise BlockedAddress(host, first, self._guard.refusal(first) or "is refused")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
