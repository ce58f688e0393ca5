"""Trust checks on rows read from the shared store, before any other check or kernel change.

A row is refused (with a warning naming the address) when its address is not an address or
network, when it is wider than /24 (IPv4) or /64 (IPv6), when it was written already expired, or
when it claims a decision time far in the future (that would shield it from later unbans). The
blocker then applies this node's own ignore list (loopback, own addresses, ``blocker.ignore``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from mailopsd.firewall.base import canonical, parse_target

WIDEST = {4: 24, 6: 64}
FUTURE = 300.0  # seconds a decision may lie ahead of this node's clock
TEXT_MAX = {"rule": 64, "reason": 300, "node": 63}  # longer text from the store is cut


class Row(NamedTuple):
    """One row of ``mailopsd.bans`` as read (times in epoch seconds). A NamedTuple: a new
    node's start builds 100,000 of them."""

    id: int
    action: str
    ip: str
    rule: str
    reason: str
    hits: int
    decided: float
    expires: float | None
    node: str
    inserted: float
    key: str


def canonical_or_problem(ip: str) -> tuple[str | None, str]:
    """(canonical target, "") for an acceptable address or network, else (None, problem)."""
    if type(ip) is str and "/" not in ip and ":" not in ip:
        try:
            return canonical(ip), ""  # a host address: never too wide (fast for IPv4)
        except ValueError:
            return None, "not an address or network"
    try:
        net = parse_target(ip)
    except (ValueError, TypeError):
        return None, "not an address or network"
    if net.prefixlen < WIDEST[net.version]:
        return None, f"network wider than /{WIDEST[net.version]}"
    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    return text, ""


def check(row: Row, now: float) -> tuple[Row | None, str]:
    """(row with its canonical address, "") when acceptable, else (None, why refused)."""
    ip, problem = canonical_or_problem(row.ip)
    if ip is None:
        return None, problem
    if row.action not in ("ban", "unban"):
        return None, f"unknown action {row.action[:20]!r}"
    if not math.isfinite(row.decided) or (row.expires is not None
                                          and not math.isfinite(row.expires)):
        return None, "time out of range"
    if row.decided > now + FUTURE:
        return None, "decided in the future"
    if row.action == "ban" and row.expires is not None and row.expires <= min(
            row.inserted, row.decided):
        return None, "expiry in the past"
    if ip == row.ip and len(row.rule) <= TEXT_MAX["rule"] and len(
            row.reason) <= TEXT_MAX["reason"] and len(row.node) <= TEXT_MAX["node"]:
        return row, ""
    return row._replace(ip=ip, rule=row.rule[:TEXT_MAX["rule"]],
                        reason=row.reason[:TEXT_MAX["reason"]],
                        node=row.node[:TEXT_MAX["node"]]), ""


def hit_time(seen: float | None, now: float, keep: float) -> float | None:
    """A shared hit's time if it is a sane one (finite, within ``keep`` of now), else None."""
    if seen is None or not math.isfinite(seen) or not now - keep <= seen <= now + FUTURE:
        return None
    return seen
