"""The evidence of a ban: the log lines that decided it, kept with the ban (``bans show``).

The blocker service shows every line it reads to an ``Evidence`` before the ban policy counts it.
Lines that match a rule are kept per address (at most the largest ``maxretry`` per rule and
address); when the policy decides a ban, ``take`` returns the lines of that rule and address
within the decision's window, the newest ``count`` of them, and forgets the address.

Memory is bounded: at most ``max_addresses`` addresses are remembered (least recently seen
dropped first), each with at most ``maxretry`` lines of at most ``MAX_LINE`` characters per rule.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.rules import RuleSpec

MAX_LINE = 1000
MAX_ADDRESSES = 20000


class Evidence:
    """Recent matching lines per address; not thread-safe (the service's lock)."""

    def __init__(self, specs: Mapping[str, RuleSpec], *, ipv6_aggregate: bool = False,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.parser = LineParser(specs, ipv6_aggregate=ipv6_aggregate)
        self.keep = {name: max(1, s.maxretry) for name, s in specs.items() if s.enabled}
        # below this many lines per address no rule can be over its maxretry: no count needed
        self.cap = min(self.keep.values(), default=1)
        self.max_addresses = max_addresses
        # ip -> [(rule, when, line)], oldest first; a dict keeps insertion order (LRU by re-insert)
        self._lines: dict[str, list[tuple[str, float, str]]] = {}

    def add(self, line: str) -> None:
        """Remember ``line`` if it matches an enabled rule; hostile lines are simply skipped."""
        try:
            m = self.parser.parse(line)
        except Exception:  # the policy reports bad lines; evidence is best effort
            return
        if m is None or m.rule not in self.keep:
            return
        rule, ip, when = m.rule, m.ip, m.when
        kept = self._lines.pop(ip, None)
        if kept is None:
            kept = []
            if len(self._lines) >= self.max_addresses:
                del self._lines[next(iter(self._lines))]  # the least recently seen
        kept.append((rule, when, line.rstrip("\n")[:MAX_LINE]))
        if len(kept) > self.cap:
            # keep at most maxretry lines per rule: drop this rule's oldest line if over
            same = [i for i, item in enumerate(kept) if item[0] == rule]
            if len(same) > self.keep[rule]:
                del kept[same[0]]
        self._lines[ip] = kept

    def take(self, ip: str, rule: str, count: int, first_seen: float,
             last_seen: float) -> list[str]:
        """The lines behind a ban decision (oldest first, at most ``count``); forgets ``ip``."""
        kept = self._lines.pop(ip, None) or []
        lines = [text for r, when, text in kept
                 if r == rule and first_seen - 1 <= when <= last_seen + 1]
        return lines[-count:] if count > 0 else []

    def forget(self, ip: str) -> None:
        """Drop what is kept for ``ip`` (banned by other means, or removed)."""
        self._lines.pop(ip, None)

    def __len__(self) -> int:
        return len(self._lines)
