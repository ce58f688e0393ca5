"""Incremental reads of Exim's paniclog and spamd's `result:` lines (across rotation).

A cursor remembers (inode, offset) and returns only whole new lines; a new inode or a shorter
file starts again at 0. Hostile bytes are decoded with replacement, over-long lines are cut.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field

MAX_LINE = 8192
MAX_READ = 8 << 20  # never read more than this per poll: a huge log degrades, never stalls

# spamd.pl: sprintf("spamd: result: %s %2d - %s %s", $yorn, $score, $tests, join(",", @extra))
_RESULT = re.compile(r"spamd: result: ([Y.]) +(-?\d+) - (\S*) (\S*)")
_BLOCKED = re.compile(r"^[A-Z0-9_]+_BLOCKED$")


class LogCursor:
    """Reads the new whole lines of one log file each time it is asked."""

    def __init__(self, path: str, start_at_end: bool = False, tail_bytes: int = 0) -> None:
        self.path = path
        self.ino: int | None = None
        self.offset = 0
        self._start_at_end = start_at_end
        self._tail_bytes = tail_bytes

    def read(self) -> list[str]:
        """New complete lines since the last call; [] when the file is absent."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if self.ino != st.st_ino or st.st_size < self.offset:
                first = self.ino is None
                self.ino, self.offset = st.st_ino, 0
                if first and self._start_at_end:
                    self.offset = st.st_size
                elif first and self._tail_bytes and st.st_size > self._tail_bytes:
                    self.offset = self._line_start(fd, st.st_size - self._tail_bytes)
            if st.st_size <= self.offset:
                return []
            data = os.pread(fd, min(st.st_size - self.offset, MAX_READ), self.offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= MAX_READ:  # one giant line: skip it rather than stall
                self.offset += len(data)
            return []
        self.offset += end + 1
        return [raw[:MAX_LINE].decode("utf-8", "replace")
                for raw in data[:end].split(b"\n")]

    @staticmethod
    def _line_start(fd: int, offset: int) -> int:
        chunk = os.pread(fd, MAX_LINE, offset)
        nl = chunk.find(b"\n")
        return offset + nl + 1 if nl >= 0 else offset


@dataclass(frozen=True)
class SpamdResult:
    """One spamd `result:` line."""

    spam: bool
    score: int
    rules: tuple[str, ...]
    bayes: bool

    @property
    def blocked(self) -> tuple[str, ...]:
        """The *_BLOCKED rules it hit (URIBL_BLOCKED, RCVD_IN_*_BLOCKED, ...)."""
        return tuple(r for r in self.rules if _BLOCKED.match(r))


def parse_spamd_result(line: str) -> SpamdResult | None:
    """The result a spamd log line carries, or None for any other line."""
    m = _RESULT.search(line)
    if not m:
        return None
    rules = tuple(r for r in m.group(3).split(",") if r)
    extra = m.group(4).split(",")
    bayes = any(item.startswith("bayes=") for item in extra)
    return SpamdResult(m.group(1) == "Y", int(m.group(2)), rules, bayes)


@dataclass
class SpamdTally:
    """Counters since start, and a window of the most recent results for rates."""

    window: int = 200
    messages: dict[str, int] = field(default_factory=lambda: {"spam": 0, "ham": 0})
    rule_hits: dict[str, int] = field(default_factory=dict)
    without_bayes: int = 0
    recent: deque[SpamdResult] = field(default_factory=deque)

    def add(self, result: SpamdResult) -> None:
        """Count one result."""
        self.messages["spam" if result.spam else "ham"] += 1
        for rule in result.blocked:
            self.rule_hits[rule] = self.rule_hits.get(rule, 0) + 1
        if not result.bayes:
            self.without_bayes += 1
        self.recent.append(result)
        while len(self.recent) > self.window:
            self.recent.popleft()

    def feed(self, lines: list[str]) -> int:
        """Count every result line among ``lines``; returns how many there were."""
        n = 0
        for line in lines:
            result = parse_spamd_result(line)
            if result is not None:
                self.add(result)
                n += 1
        return n

    def blocked_rate(self) -> tuple[float, dict[str, int]]:
        """Share of recent results with a *_BLOCKED rule, and those rules' recent hits."""
        hits: dict[str, int] = {}
        with_blocked = 0
        for r in self.recent:
            if r.blocked:
                with_blocked += 1
                for rule in r.blocked:
                    hits[rule] = hits.get(rule, 0) + 1
        return (with_blocked / len(self.recent) if self.recent else 0.0), hits

    def no_bayes_rate(self) -> float:
        """Share of recent results scanned without Bayes."""
        if not self.recent:
            return 0.0
        return sum(1 for r in self.recent if not r.bayes) / len(self.recent)


@dataclass
class PaniclogTally:
    """Lines the paniclog got (counter) and the latest ones (for events and figures)."""

    lines_total: int = 0
    last_line: str = ""
    new: list[str] = field(default_factory=list)

    def feed(self, lines: list[str]) -> None:
        """Count new lines (blank ones too: Exim writes none)."""
        lines = [line for line in lines if line.strip()]
        self.lines_total += len(lines)
        self.new = lines
        if lines:
            self.last_line = lines[-1]
