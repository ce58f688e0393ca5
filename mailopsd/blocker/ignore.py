"""Addresses the blocker must never ban: loopback, this host's own addresses, configured CIDRs."""

from __future__ import annotations

import _socket  # socket's C functions: socket.py's enum set-up costs ~1 ms of scan-log's start-up
import bisect
import ipaddress
from collections.abc import Iterable

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from mailopsd.core.config.schema_blocker import BlockerConfig

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.0/8", "::1/128")
_CACHE_MAX = 65536


def host_addresses() -> list[str]:
    """This host's own interface addresses: from the kernel over rtnetlink (cheap), else from
    psutil.net_if_addrs (IPv6 scope ids removed)."""
    from mailopsd.blocker.hostaddrs import netlink_addresses

    try:
        return netlink_addresses()
    except OSError:
        return psutil_addresses()


def psutil_addresses() -> list[str]:
    """This host's own interface addresses (psutil.net_if_addrs), IPv6 scope ids removed."""
    import psutil

    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (_socket.AF_INET, _socket.AF_INET6):
                out.append(a.address.split("%", 1)[0])
    return out


class IgnoreList:
    """A set of networks; ``contains`` says whether an address or network touches one."""

    def __init__(self, networks: Iterable[str]) -> None:
        """Raises ValueError for an entry that is not an address or CIDR."""
        nets: list[Net] = []
        for n in networks:
            net = ipaddress.ip_network(n, strict=False)
            if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
                # ::ffff:a.b.c.d/128 means the IPv4 address the parser reports
                mapped = net.network_address.ipv4_mapped
                net = ipaddress.ip_network(f"{mapped}/{max(net.prefixlen - 96, 0)}")
            nets.append(net)
        self.networks: tuple[Net, ...] = tuple(nets)
        # merged, sorted integer ranges per IP version, searched with bisect: ipaddress objects
        # cost microseconds per lookup and a scan sees tens of thousands of addresses
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version in (4, 6):
            merged: list[list[int]] = []
            for lo, hi in sorted((int(n.network_address), int(n.broadcast_address))
                                 for n in nets if n.version == version):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self._starts[version] = [r[0] for r in merged]
            self._ends[version] = [r[1] for r in merged]
        self._cache: dict[str, bool] = {}

    @classmethod
    def from_config(cls, cfg: BlockerConfig) -> IgnoreList:
        """Loopback and the host's own addresses (unless ignore_self = false) + blocker.ignore."""
        entries: list[str] = list(cfg.ignore)
        if cfg.ignore_self:
            entries[:0] = [*LOOPBACK, *host_addresses()]
        return cls(entries)

    def contains(self, ip: str) -> bool:
        """True if the address (or network, e.g. an aggregated /64) overlaps an ignored network.

        Text that is neither an address nor a network is treated as ignored: never ban it.
        """
        hit = self._cache.get(ip)
        if hit is None:
            hit = self._lookup(ip)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[ip] = hit
        return hit

    def _lookup(self, ip: str) -> bool:
        # integer ranges: ipaddress objects cost microseconds per address, a scan sees many
        try:
            if "/" in ip:
                net = ipaddress.ip_network(ip, strict=False)
                version, lo = net.version, int(net.network_address)
                hi = int(net.broadcast_address)
            elif ":" in ip:
                version, lo = 6, int.from_bytes(_socket.inet_pton(_socket.AF_INET6, ip), "big")
                hi = lo
            else:
                version, lo = 4, int.from_bytes(_socket.inet_pton(_socket.AF_INET, ip), "big")
                hi = lo
        except (OSError, ValueError):
            return True
        # the last range starting at or below hi is the only one that can overlap [lo, hi]
        i = bisect.bisect_right(self._starts[version], hi) - 1
        return i >= 0 and self._ends[version][i] >= lo

    def __len__(self) -> int:
        return len(self.networks)
