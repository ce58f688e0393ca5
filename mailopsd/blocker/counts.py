"""The ban policy's counts across restarts: table ``blocker_counts`` (state migration 5).

Saved by the log follower's ``on_save`` hook, in the SAME transaction as the log position:
after a stop or a ``kill -9`` the database holds the counts of exactly the lines before the
saved position, so a restart neither forgets hits (an address whose maxretry failures straddle
a crash is still banned) nor counts a line twice (the lines after the position are read again
and counted once). One row per address: ``rule:t,t;rule:t`` (log times, seconds).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailopsd.core.logs import get_logger

if TYPE_CHECKING:
    from mailopsd.blocker.policy import BanPolicy


def encode(counts: dict[str, list[float]]) -> tuple[str, float]:
    """A row's text and its newest time."""
    text = ";".join(f"{name}:{','.join(repr(float(t)) for t in times)}"
                    for name, times in sorted(counts.items()))
    return text, max(max(times) for times in counts.values())


def decode(text: str) -> dict[str, list[float]]:
    """A row's counts; raises ValueError for a damaged row."""
    out: dict[str, list[float]] = {}
    for part in text.split(";"):
        name, _, times = part.partition(":")
        if not name or not times:
            raise ValueError(f"bad counts entry {part[:80]!r}")
        out[name] = [float(t) for t in times.split(",")]
    return out


def save(conn: sqlite3.Connection, policy: BanPolicy) -> int:
    """Write the counts changed since the last save (inside the caller's transaction);
    returns how many addresses were written or deleted."""
    return writer(policy, None)(conn)


def writer(policy: BanPolicy, lock: Any) -> Callable[[sqlite3.Connection], int]:
    """Take the counts changed since the last save (call with the policy's lock held) and
    return the function that writes them in a transaction. If that write fails, the addresses
    are marked changed again (under ``lock``), so the next save carries them."""
    changes = policy.take_changes()
    pruned, policy.pruned_before = policy.pruned_before, None

    def write(conn: sqlite3.Connection) -> int:
        try:
            gone = [(ip,) for ip, c in changes if not c]
            rows = [(ip, *encode(c)) for ip, c in changes if c]
            if gone:
                conn.executemany("DELETE FROM blocker_counts WHERE ip = ?", gone)
            if rows:
                conn.executemany(
                    "INSERT INTO blocker_counts (ip, hits, newest) VALUES (?, ?, ?) ON CONFLICT"
                    " (ip) DO UPDATE SET hits = excluded.hits, newest = excluded.newest", rows)
            if pruned is not None:  # what the policy pruned from memory
                conn.execute("DELETE FROM blocker_counts WHERE newest <= ?", (pruned,))
        except BaseException:
            with lock or contextlib.nullcontext():
                policy.mark_changed([ip for ip, _ in changes], pruned)
            raise
        return len(changes)

    return write


def load(conn: sqlite3.Connection, policy: BanPolicy) -> int:
    """Put every saved count back into ``policy``; returns how many addresses. A damaged row
    is skipped with one error event (it can only cost a ban, never cause one)."""
    n = bad = 0
    for row in conn.execute("SELECT ip, hits FROM blocker_counts"):
        try:
            policy.load_counts(row[0], decode(row[1]))
        except (ValueError, TypeError):
            bad += 1
            continue
        n += 1
        if not n % 32768:
            policy.compact()  # a million saved addresses must not all sit in dicts first
    if bad:
        get_logger("blocker").error("blocker_counts_damaged", rows=bad)
    policy.prune()  # what fell out of its window while the daemon was down
    return n
