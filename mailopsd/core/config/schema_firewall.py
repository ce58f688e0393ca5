"""[blocker.firewall] and [blocker.flood]: how bans reach the kernel, and the connection-flood rule.

Owned by the firewall work (issue 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailopsd.core.config.common import opt, positive
from mailopsd.core.config.types import Duration

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import Literal

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,27}$")


def ports_list(value: tuple[int, ...]) -> None:
    """Validator: TCP port numbers, no duplicates, at most 15 (iptables' multiport limit)."""
    bad = [p for p in value if not 1 <= p <= 65535]
    if bad:
        raise ValueError(f"port numbers must be 1-65535 (got {bad})")
    if len(set(value)) != len(value):
        raise ValueError("ports must not repeat")
    if len(value) > 15:
        raise ValueError("at most 15 ports (iptables multiport)")


def nonempty_ports(value: tuple[int, ...]) -> None:
    """Validator: like ports_list, and at least one port."""
    if not value:
        raise ValueError("at least one port is needed")
    ports_list(value)


def object_name(value: str) -> None:
    """Validator: a chain/table name both iptables and nft accept (letters, digits, _ -).

    28 characters at most: iptables' chain limit, and it leaves room for the ``-v4``/``-v6``
    suffix of the ipset names derived from the chain (ipset names have at most 31).
    """
    if not _NAME.match(value):
        raise ValueError("expected 1-28 letters, digits, '_' or '-', starting with a letter "
                         f"(got {value!r})")


@dataclass(frozen=True)
class FirewallConfig:
    """[blocker.firewall]: backend, chain/table names, ports and action."""

    backend: Literal["iptables", "nftables"] = opt(
        "iptables", doc="iptables: python-iptables rules in the legacy tables matching an ipset "
        "per family (or one rule per ban, see iptables_set); "
        "nftables: sets with per-element timeouts in a table of its own")
    ports: tuple[int, ...] = opt((25,), check=nonempty_ports,
                                 doc="TCP ports closed to banned clients, e.g. [25, 465, 587]")
    action: Literal["drop", "reject"] = opt(
        "drop", doc="drop: silently; reject: answer with a TCP reset")
    ipv6: bool = opt(True, doc="also ban IPv6 clients (ip6tables / IPv6 sets)")
    iptables_chain: str = opt("mailopsd", check=object_name,
                              doc="the chain in the filter table that holds the bans; its "
                              "ipsets are named <chain>-v4 and <chain>-v6 (at most 31 "
                              "characters, as ipset demands)")
    iptables_set: bool = opt(
        True, doc="true: the iptables backend keeps banned addresses in one hash:net ipset per "
        "family (<chain>-v4, <chain>-v6), matched by one rule each, so a ban is O(1) at any "
        "number of bans (needs python3-pyroute2 and the kernel's ip_set); false: one "
        "`-s IP -j DROP` rule per ban (each ban rewrites the whole table: ~6.5 ms at 10,000)")
    nftables_table: str = opt("mailopsd", check=object_name,
                              doc="the nftables table (family inet) that holds the ban sets")
    timeout: Duration = opt(Duration(10), check=positive,
                            doc="longest wait for an nft command or for the xtables lock")
    check_interval: Duration = opt(
        Duration(1), check=positive,
        doc="how often the daemon lifts expired bans and picks up `mailopsd bans` changes")
    verify_interval: Duration = opt(
        Duration(30), check=positive,
        doc="how often the daemon checks that the kernel still holds its bans (a flushed "
            "ruleset is restored)")


@dataclass(frozen=True)
class FloodConfig:
    """[blocker.flood]: ban an IP holding too many concurrent connections to the SMTP ports."""

    enabled: bool = opt(True, doc="sample the SMTP connections with psutil")
    max_connections: int = opt(20, check=positive,
                               doc="more than this many concurrent connections from one IP "
                               "is a flood")
    interval: Duration = opt(Duration(5), check=positive, doc="how often to sample")
    samples: int = opt(2, check=positive,
                       doc="consecutive samples over the limit before the IP is banned")
    bantime: Duration = opt(Duration(3600), check=positive, doc="how long a flooder is banned")
    ports: tuple[int, ...] = opt((), check=ports_list,
                                 doc="local ports counted; empty = blocker.firewall.ports")
