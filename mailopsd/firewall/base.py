"""The firewall backend interface, and the address handling every backend shares.

A backend owns a private corner of the kernel's firewall (a chain, or a table) that closes the
configured TCP ports to banned addresses. Bans are addresses or networks in canonical text form
(``192.0.2.7``, ``2001:db8::/64``): see :func:`canonical`.
"""

from __future__ import annotations

import builtins
import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

from mailopsd.core.errors import FirewallError

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_target(ip: str) -> IPNet:
    """The network a ban covers (a single address is a /32 or /128).

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.7``, as a dual-stack listener reports IPv4
    clients) become the IPv4 address. Raises ValueError if ``ip`` is not an address or CIDR.
    """
    if not isinstance(ip, str) or len(ip) > 64:
        raise ValueError(f"not an IP address or network: {ip!r}")
    net = ipaddress.ip_network(ip.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(mapped)
    return net


def canonical(ip: str) -> str:
    """Canonical text of a ban target: plain address for a host, ``addr/len`` for a network.

    Raises ValueError if ``ip`` is not an address or CIDR.
    """
    if type(ip) is str and "/" not in ip and ":" not in ip:
        # fast path (a cluster node's start loads 100,000 bans): an IPv4 address already in
        # canonical dotted-quad form is returned as it is, 10x cheaper than ipaddress
        try:
            if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, ip)) == ip:
                return ip
        except OSError:
            pass  # not a plain address: the full check below says why
    net = parse_target(ip)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def is_v6(ip: str) -> bool:
    """Whether a canonical ban target is IPv6."""
    return ":" in ip


class FirewallBackend(ABC):
    """What the blocker needs from a firewall. Every method raises FirewallError on failure.

    Methods may be called from several threads; implementations serialise themselves.
    """

    name: str = "?"

    @abstractmethod
    def setup(self) -> None:
        """Create the backend's chain/table and hooks if missing (idempotent; keeps bans)."""

    @abstractmethod
    def ban(self, ip: str, timeout: float | None = None) -> None:
        """Close the ports to ``ip``; a second ban of the same ip leaves one rule/element.

        ``timeout`` (seconds) is a hint for backends that can expire bans by themselves.
        """

    @abstractmethod
    def ban_many(self, bans: Mapping[str, float | None]) -> None:
        """Add many bans (ip -> timeout or None) in one kernel commit."""

    @abstractmethod
    def restore(self, bans: Mapping[str, float | None]) -> None:
        """Set up, and make the bans exactly ``bans``, in one commit (used at start)."""

    @abstractmethod
    def unban(self, ip: str) -> bool:
        """Reopen the ports to ``ip``; returns whether it was banned."""

    @abstractmethod
    def list(self) -> set[str]:
        """The canonical ban targets now in the kernel."""

    @abstractmethod
    def flush(self) -> builtins.list[str]:
        """Remove everything this backend ever added (bans, chains, jumps, tables).

        Returns a description of each object removed (empty if there was nothing).
        """


def canonical_bans(bans: Mapping[str, float | None] | Iterable[str],
                   ipv6: bool = True) -> dict[str, float | None]:
    """Validate and canonicalise ban targets; raises FirewallError on a bad one.

    IPv6 targets are refused when the backend runs without IPv6.
    """
    items = bans.items() if isinstance(bans, Mapping) else ((b, None) for b in bans)
    out: dict[str, float | None] = {}
    for ip, timeout in items:
        try:
            key = canonical(ip)
        except ValueError as exc:
            raise FirewallError(str(exc)) from None
        if is_v6(key) and not ipv6:
            raise FirewallError(f"cannot ban {key}: blocker.firewall.ipv6 is false")
        out[key] = timeout
    return out
