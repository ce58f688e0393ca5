"""The node's local side of publishing: a queue in the state database, and the applied cursor.

What the node decides goes into ``cluster_outbox`` first (SQLite, survives a restart while the
store is away) and is deleted only ``RETAIN`` seconds after it reached the store: after a
failover to a standby that had not yet received it, it is pushed again (its ``key`` makes a
second copy impossible). ``cluster_cursor`` holds the last store row id applied per table.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from mailopsd.core.state import PerThread, StateDB, immediate

RETAIN = 600.0


@dataclass(frozen=True)
class Queued:
    """One queued decision."""

    seq: int
    key: str
    action: str
    ip: str
    rule: str
    reason: str
    hits: int
    decided: float
    expires: float | None


class Outbox:
    """The queue and cursors; one SQLite connection per thread. Raises StateError."""

    def __init__(self, state: StateDB, node: str) -> None:
        self.state = state
        self.node = node
        self._conns = PerThread(state)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.conn()

    def close(self) -> None:
        """Close this thread's connection."""
        self._conns.close()

    def put(self, action: str, ip: str, rule: str, reason: str, hits: int, decided: float,
            expires: float | None) -> str:
        """Queue one decision; returns its key."""
        key = f"{self.node}:{uuid.uuid4().hex}"
        with immediate(self._conn(), "cluster outbox") as c:
            c.execute("INSERT INTO cluster_outbox (key, action, ip, rule, reason, hits, decided, "
                      "expires) VALUES (?,?,?,?,?,?,?,?)",
                      (key, action, ip, rule, reason, hits, decided, expires))
        return key

    def pending(self, after: int = 0, limit: int = 1000, *, sent: bool = False) -> list[Queued]:
        """Queued rows after ``after``: not yet in the store, or (``sent``) all still kept."""
        where = "" if sent else " AND sent IS NULL"
        rows = self._conn().execute(
            f"SELECT * FROM cluster_outbox WHERE seq > ?{where} ORDER BY seq LIMIT ?",
            (after, limit)).fetchall()
        return [Queued(seq=r["seq"], key=r["key"], action=r["action"], ip=r["ip"],
                       rule=r["rule"], reason=r["reason"], hits=r["hits"], decided=r["decided"],
                       expires=r["expires"]) for r in rows]

    def sent_keys(self, keys: list[str], now: float | None = None) -> None:
        """Mark rows stored by someone else (``mailopsd bans`` pushing at once) by key."""
        now = time.time() if now is None else now
        with immediate(self._conn(), "cluster outbox") as c:
            c.executemany("UPDATE cluster_outbox SET sent = ? WHERE key = ?",
                          [(now, k) for k in keys])

    def sent(self, seqs: list[int], now: float | None = None) -> None:
        """Mark rows as stored; they are kept ``RETAIN`` seconds for a failover's re-push."""
        now = time.time() if now is None else now
        with immediate(self._conn(), "cluster outbox") as c:
            c.executemany("UPDATE cluster_outbox SET sent = ? WHERE seq = ?",
                          [(now, s) for s in seqs])
            c.execute("DELETE FROM cluster_outbox WHERE sent < ?", (now - RETAIN,))

    def waiting(self) -> int:
        """How many decisions have not reached the store yet."""
        row = self._conn().execute(
            "SELECT COUNT(*) FROM cluster_outbox WHERE sent IS NULL").fetchone()
        return int(row[0])

    def cursor(self, name: str) -> int | None:
        """The last applied store id for ``name`` (None: never synced)."""
        row = self._conn().execute("SELECT value FROM cluster_cursor WHERE name = ?",
                                   (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, name: str, value: int) -> None:
        """Remember the last applied store id for ``name``."""
        with immediate(self._conn(), "cluster cursor") as c:
            c.execute("INSERT INTO cluster_cursor (name, value) VALUES (?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))
