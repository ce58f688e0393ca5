"""The evidence of a ban: the log lines that decided it, kept with the ban (``bans show``).

The blocker service shows every line it reads to an ``Evidence`` before the ban policy counts it.
Lines that match a rule are kept per address (at most the largest ``maxretry`` per rule and
address); when the policy decides a ban, ``take`` returns the lines of that rule and address
within the decision's window, the newest ``count`` of them, and forgets the address.

Memory is bounded: at most ``max_addresses`` addresses are remembered (least recently seen
dropped first), each with at most ``maxretry`` lines of at most ``MAX_LINE`` characters per rule.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping

from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.rules import RuleSpec

MAX_LINE = 1000
MAX_ADDRESSES = 20000


class Evidence:
    """Recent matching lines per address and rule; not thread-safe (the service's lock)."""

    def __init__(self, specs: Mapping[str, RuleSpec], *, ipv6_aggregate: bool = False,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.parser = LineParser(specs, ipv6_aggregate=ipv6_aggregate)
        self.keep = {name: max(1, s.maxretry) for name, s in specs.items() if s.enabled}
        self.max_addresses = max_addresses
        # ip -> rule -> (when, line), oldest first
        self._lines: OrderedDict[str, dict[str, deque[tuple[float, str]]]] = OrderedDict()

    def add(self, line: str) -> None:
        """Remember ``line`` if it matches an enabled rule; hostile lines are simply skipped."""
        try:
            m = self.parser.parse(line)
        except Exception:  # the policy reports bad lines; evidence is best effort
            return
        if m is None or m.rule not in self.keep:
            return
        per_ip = self._lines.get(m.ip)
        if per_ip is None:
            per_ip = self._lines[m.ip] = {}
            if len(self._lines) > self.max_addresses:
                self._lines.popitem(last=False)
        else:
            self._lines.move_to_end(m.ip)
        q = per_ip.get(m.rule)
        if q is None:
            q = per_ip[m.rule] = deque(maxlen=self.keep[m.rule])
        q.append((m.when, line.rstrip("\n")[:MAX_LINE]))

    def take(self, ip: str, rule: str, count: int, first_seen: float,
             last_seen: float) -> list[str]:
        """The lines behind a ban decision (oldest first, at most ``count``); forgets ``ip``."""
        per_ip = self._lines.pop(ip, None) or {}
        lines = [text for when, text in per_ip.get(rule, ())
                 if first_seen - 1 <= when <= last_seen + 1]
        return lines[-count:] if count > 0 else []

    def forget(self, ip: str) -> None:
        """Drop what is kept for ``ip`` (banned by other means, or removed)."""
        self._lines.pop(ip, None)

    def __len__(self) -> int:
        return len(self._lines)
