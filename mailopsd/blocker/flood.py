"""The connection-flood rule: too many concurrent connections from one IP to the SMTP ports.

The seed's real incident: a couple of addresses held so many SMTP connections open that the
organisation's own users could not send, while Exim itself logged only "no host name found".
Every ``blocker.flood.interval`` the service samples the kernel's TCP table with psutil (the
daemon's own network namespace); an IP above ``max_connections`` for ``samples`` consecutive
samples is banned under the rule name ``flood``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mailopsd.blocker.policy import BanDecision
from mailopsd.core.config.schema_firewall import FloodConfig
from mailopsd.firewall.base import canonical

RULE = "flood"
# A connection occupies an Exim process in these states; TIME_WAIT and friends are gone already.
BUSY_STATES = frozenset({"ESTABLISHED", "SYN_RECV", "CLOSE_WAIT"})


def count_connections(conns: Iterable[Any], ports: Iterable[int]) -> Counter[str]:
    """Concurrent connections per remote address to the local ``ports``.

    ``conns`` are psutil's ``sconn`` tuples (laddr, raddr, status). IPv4 clients of a dual-stack
    listener (``::ffff:192.0.2.7``) count as their IPv4 address.
    """
    wanted = set(ports)
    out: Counter[str] = Counter()
    for c in conns:
        if not c.raddr or not c.laddr or c.laddr.port not in wanted or c.status not in BUSY_STATES:
            continue
        try:
            out[canonical(c.raddr.ip)] += 1
        except ValueError:
            continue
    return out


def _psutil_tcp() -> list[Any]:
    import psutil

    return list(psutil.net_connections(kind="tcp"))


class FloodDetector:
    """Turns connection samples into ban decisions (not thread-safe: one sampling thread)."""

    def __init__(self, config: FloodConfig, ports: Sequence[int], *,
                 ignored: Callable[[str], bool], banned: Callable[[str], bool],
                 duration: Callable[[str, float], float | None] | None = None,
                 sampler: Callable[[], Iterable[Any]] = _psutil_tcp) -> None:
        """``duration(ip, bantime)`` may stretch the ban for repeat offenders (None = permanent)."""
        self.config = config
        self.ports = tuple(config.ports or ports)
        self.ignored = ignored
        self.banned = banned
        self.duration = duration or (lambda _ip, bantime: bantime)
        self.sampler = sampler
        self._streak: dict[str, tuple[int, float]] = {}  # ip -> (samples over, first seen)

    def sample(self, now: float) -> list[BanDecision]:
        """Take one sample; returns the decisions for IPs over the limit long enough."""
        counts = count_connections(self.sampler(), self.ports)
        limit = self.config.max_connections
        over = {ip: n for ip, n in counts.items()
                if n > limit and not self.ignored(ip) and not self.banned(ip)}
        streak = {ip: (self._streak.get(ip, (0, now))[0] + 1, self._streak.get(ip, (0, now))[1])
                  for ip in over}
        decisions = []
        for ip, (seen, first) in streak.items():
            if seen < self.config.samples:
                continue
            decisions.append(BanDecision(
                ip=ip, rule=RULE, count=over[ip],
                duration=self.duration(ip, float(self.config.bantime)),
                reason=f"{over[ip]} concurrent connections to port(s) "
                       f"{','.join(str(p) for p in self.ports)} (limit {limit}) in {seen} "
                       "samples", first_seen=first, last_seen=now))
        self._streak = {ip: s for ip, s in streak.items() if s[0] < self.config.samples}
        return decisions
