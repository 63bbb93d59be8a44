"""The fetch guard: which network addresses module, token and blob fetches may reach.

A registry, a token realm in a ``WWW-Authenticate`` challenge, a blob redirect and a
module URL are all chosen by someone else; without a guard each is a way to make the server
GET an internal address (server-side request forgery), such as the cloud metadata service.

The check runs **at connect time on the resolved IP**: :class:`GuardedConnector` filters the
addresses a host name resolves to (and IP literals) before any socket is opened, so a name
that resolves to a public address once and to an internal one later (DNS rebinding) is
caught on the connection it would be used for. Every connection goes through it, redirects
and token requests included. A second check in the connector's socket factory refuses any
connect to an address that is never allowed, whatever path led there.

Always refused: link-local (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254,
fd00:ec2::254, 100.100.100.200 and names like ``metadata.google.internal``), unspecified
(0.0.0.0/8, ::), multicast, broadcast and reserved (240.0.0.0/4) addresses, also when
embedded in IPv6 (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4, Teredo).
Refused unless the destination's :class:`AddressPolicy` allows it: private addresses
(RFC 1918, CGNAT 100.64.0.0/10, fc00::/7, fec0::/10; ``allow_private``) and loopback
(127.0.0.0/8, ::1; ``allow_loopback``, allowed by default for local registries).

The policy is chosen by destination ``host[:port]`` (a registry's settings apply to
connections to that host, whatever the request), so a registry's token service or blob
storage on another private host needs its own entry.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp.abc import ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from .errors import UnsafeDestination

__all__ = [
    "DEFAULT_POLICY",
    "METADATA_HOSTNAMES",
    "AddressPolicy",
    "FetchGuard",
    "GuardedConnector",
]

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTNAMES = frozenset({
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
})
"""Host names of cloud metadata services, refused before any DNS lookup."""

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[_Net, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in pairs)


_ALWAYS_REFUSED = _nets(
    ("169.254.169.254/32", "a cloud metadata address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("169.254.0.0/16", "a link-local address"),
    ("fe80::/10", "a link-local address"),
    ("0.0.0.0/8", "an unspecified address"),
    ("::/128", "an unspecified address"),
    ("255.255.255.255/32", "a broadcast address"),
    ("224.0.0.0/4", "a multicast address"),
    ("ff00::/8", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_PRIVATE = _nets(
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a shared (CGNAT) address"),
    ("fc00::/7", "a unique local address"),
    ("fec0::/10", "a site-local address"),
)
_LOOPBACK = _nets(("127.0.0.0/8", "a loopback address"), ("::1/128", "a loopback address"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if ip in _NAT64 or (packed[:12] == bytes(12) and int(ip) > 1):  # NAT64, IPv4-compatible
        return ipaddress.IPv4Address(packed[12:])
    return None


def _match(ip: IPAddress, table: tuple[tuple[_Net, str], ...]) -> str | None:
    for net, reason in table:
        if ip.version == net.version and ip in net:
            return reason
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses one destination may have. Immutable.

    ``allow_private``: RFC 1918, CGNAT and IPv6 unique/site-local addresses.
    ``allow_loopback``: 127.0.0.0/8 and ::1. Link-local, metadata, unspecified, multicast,
    broadcast and reserved addresses are refused whatever the policy.
    """

    allow_private: bool = False
    allow_loopback: bool = True

    def refusal(self, address: str) -> str | None:
        """Why ``address`` (an IP string, IPv6 scope allowed) is refused, or ``None``."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return "not an IP address"
        reason = self._refusal(ip)
        if reason is None and isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                inner_reason = self._refusal(inner)
                if inner_reason is not None:
                    return f"{inner_reason} ({inner} inside an IPv6 address)"
        return reason

    def _refusal(self, ip: IPAddress) -> str | None:
        reason = _match(ip, _ALWAYS_REFUSED)
        if reason is not None:
            return reason
        if not self.allow_loopback:
            reason = _match(ip, _LOOPBACK)
            if reason is not None:
                return reason + " (loopback not allowed for this host)"
        if not self.allow_private:
            reason = _match(ip, _PRIVATE)
            if reason is not None:
                return reason + " (set allow_private for this registry to allow it)"
        return None


DEFAULT_POLICY = AddressPolicy()
"""Loopback allowed, private refused: the policy of hosts without settings."""

_current_policy: contextvars.ContextVar[AddressPolicy | None] = contextvars.ContextVar(
    "xds_server_fetch_policy", default=None
)


def _host_name(host: str) -> str:
    return host.strip().rstrip(".").lower()


class FetchGuard:
    """Chooses the :class:`AddressPolicy` of each destination and checks addresses.

    ``policies`` maps ``host[:port]`` (as written in image references; IPv6 in brackets)
    to its policy; other hosts get ``default``. Immutable after construction; safe to
    share between connectors and event loops.
    """

    def __init__(
        self,
        policies: Mapping[str, AddressPolicy] | None = None,
        *,
        default: AddressPolicy = DEFAULT_POLICY,
    ) -> None:
        self._policies = {_host_name(k): v for k, v in (policies or {}).items()}
        self._default = default

    @property
    def default(self) -> AddressPolicy:
        """The policy of hosts without an entry."""
        return self._default

    def policy_for(self, host: str, port: int | None) -> AddressPolicy:
        """The policy of ``host`` (a name or IP, IPv6 without brackets) on ``port``."""
        name = _host_name(host)
        shown = f"[{name}]" if ":" in name else name
        if port is not None:
            policy = self._policies.get(f"{shown}:{port}")
            if policy is not None:
                return policy
        return self._policies.get(shown, self._default)

    def check_name(self, host: str) -> str | None:
        """Why the host name itself is refused (a metadata service name), or ``None``."""
        name = _host_name(host)
        if name in METADATA_HOSTNAMES or name.endswith(".metadata.google.internal"):
            return "a cloud metadata service name"
        return None

    def filter(
        self, host: str, port: int, addresses: Sequence[str]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Split resolved ``addresses`` of ``host:port`` into (allowed, [(refused, why)])."""
        policy = self.policy_for(host, port)
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for address in addresses:
            reason = policy.refusal(address)
            if reason is None:
                allowed.append(address)
            else:
                refused.append((address, reason))
        return allowed, refused

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """The connector's socket factory: refuses the address about to be connected to
        if the policy of the connection being made (or any policy) forbids it."""
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        policy = _current_policy.get() or self._default
        reason = policy.refusal(address)
        if reason is not None:
            raise UnsafeDestination(url="", host=address, address=address, reason=reason)
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedConnector(aiohttp.TCPConnector):
    """A :class:`aiohttp.TCPConnector` that connects only to addresses its
    :class:`FetchGuard` allows, checked on the resolved addresses of every new connection.

    Raises :class:`~xds_server.wasm.errors.UnsafeDestination` (not an aiohttp error, so
    never retried as a connection failure) naming the URL, the address and why.
    """

    def __init__(self, guard: FetchGuard, **kwargs: Any) -> None:
        super().__init__(socket_factory=guard.socket_factory, **kwargs)
        self._guard = guard

    @property
    def guard(self) -> FetchGuard:
        """The guard in force."""
        return self._guard

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout  # noqa: ASYNC109
    ) -> Connection:
        """Get a connection for ``req`` (pooled, or new and checked)."""
        host = req.url.raw_host or ""
        token = _current_policy.set(self._guard.policy_for(host, req.url.port))
        try:
            return await super().connect(req, traces, timeout)
        except UnsafeDestination as error:
            log.warning(
                "fetch_refused", url=str(req.url), host=error.host, address=error.address,
                reason=error.reason,
            )
            raise error.for_url(str(req.url)) from None
        finally:
            _current_policy.reset(token)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        reason = self._guard.check_name(host)
        if reason is not None:
            raise UnsafeDestination(url="", host=host, address=None, reason=reason)
        results = await super()._resolve_host(host, port, traces=traces)
        allowed, refused = self._guard.filter(host, port, [str(r["host"]) for r in results])
        if not allowed:
            address, why = refused[0] if refused else (None, "resolved to no address")
            raise UnsafeDestination(url="", host=host, address=address, reason=why)
        if refused:
            log.warning(
                "fetch_addresses_skipped", host=host, port=port,
                refused=[f"{a}: {why}" for a, why in refused],
            )
        keep = set(allowed)
        return [r for r in results if str(r["host"]) in keep]

