"""Bans in the state database (table ``bans``, migration 3): the source of truth for the firewall.

One row per banned address or network; a lifted ban stays as history (``active = 0``) so
``times_banned`` keeps counting repeat offenders. Changes made by ``mailopsd bans`` (another
process) are also appended to ``ban_changes``, which the running daemon follows to keep its
in-memory view and the ban policy in step (see service.BlockerService._sync).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from mailopsd.core.state import PerThread, StateDB, immediate


@dataclass(frozen=True)
class Ban:
    """One row of ``bans``."""

    ip: str
    rule: str
    reason: str
    first_seen: float
    last_seen: float
    count: int
    banned_at: float
    expires: float | None
    times_banned: int
    active: bool
    source: str
    lifted_at: float | None
    lifted_by: str | None
    origin: str | None = None  # the cluster node that decided it; None = this host

    @property
    def duration(self) -> float | None:
        """The ban's length in seconds (None = permanent)."""
        return None if self.expires is None else self.expires - self.banned_at

    def remaining(self, now: float) -> float | None:
        """Seconds left (0 when due, None when permanent)."""
        return None if self.expires is None else max(0.0, self.expires - now)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class Change:
    """One row of ``ban_changes``: a ban, unban or flush made by another process."""

    seq: int
    at: float
    pid: int
    action: str
    ip: str
    expires: float | None


@dataclass(frozen=True)
class BanRecord:
    """One row of ``ban_log``: a ban as it was made (rule, by whom, evidence) and how it ended."""

    id: int
    ip: str
    rule: str
    reason: str
    source: str
    by: str
    count: int
    banned_at: float
    expires: float | None
    evidence: tuple[str, ...]
    lifted_at: float | None
    lifted_by: str | None


def _record(row: sqlite3.Row) -> BanRecord:
    try:
        lines = json.loads(row["evidence"] or "[]")
    except ValueError:
        lines = []
    return BanRecord(id=row["id"], ip=row["ip"], rule=row["rule"], reason=row["reason"],
                     source=row["source"], by=row["by_whom"], count=row["count"],
                     banned_at=row["banned_at"], expires=row["expires"],
                     evidence=tuple(str(x) for x in lines if isinstance(x, str)),
                     lifted_at=row["lifted_at"], lifted_by=row["lifted_by"])


def _ban(row: sqlite3.Row) -> Ban:
    return Ban(ip=row["ip"], rule=row["rule"], reason=row["reason"],
               first_seen=row["first_seen"], last_seen=row["last_seen"], count=row["count"],
               banned_at=row["banned_at"], expires=row["expires"],
               times_banned=row["times_banned"], active=bool(row["active"]),
               source=row["source"], lifted_at=row["lifted_at"], lifted_by=row["lifted_by"],
               origin=row["origin"])


class BanStore:
    """Reads and writes bans; one SQLite connection per thread.

    ``source`` is written into rows it creates; with ``journal`` each change is also appended
    to ``ban_changes`` for the daemon to pick up (the CLI sets it). Raises StateError.
    """

    def __init__(self, state: StateDB, *, source: str = "daemon", journal: bool = False) -> None:
        self.state = state
        self.source = source
        self.journal = journal
        self._conns = PerThread(state)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.conn()

    def close(self) -> None:
        """Close this thread's connection."""
        self._conns.close()

    def _txn(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn(), "bans")

    def _log_change(self, conn: sqlite3.Connection, action: str, ip: str,
                    expires: float | None, now: float) -> None:
        if self.journal:
            conn.execute("INSERT INTO ban_changes (at, pid, action, ip, expires) "
                         "VALUES (?, ?, ?, ?, ?)", (now, os.getpid(), action, ip, expires))

    @staticmethod
    def _close_log(c: sqlite3.Connection, ips: Iterable[str] | None, now: float,
                   by: str) -> None:
        """End the open ``ban_log`` rows of ``ips`` (None: every open row)."""
        if ips is None:
            c.execute("UPDATE ban_log SET lifted_at = ?, lifted_by = ? WHERE lifted_at IS NULL",
                      (now, by))
            return
        c.executemany("UPDATE ban_log SET lifted_at = ?, lifted_by = ? "
                      "WHERE ip = ? AND lifted_at IS NULL", [(now, by, ip) for ip in ips])

    # -- writes -------------------------------------------------------------------------------
    def record(self, ip: str, rule: str, reason: str, *, count: int, first_seen: float,
               last_seen: float, expires: float | None, now: float | None = None,
               evidence: Sequence[str] = (), by: str = "") -> Ban:
        """Insert or renew the ban of ``ip`` (active); returns the row.

        A renewal of an active ban replaces its expiry and evidence but keeps ``banned_at`` and
        ``times_banned``; a new ban of a lifted row counts one more time banned. Each call also
        adds a ``ban_log`` row with ``evidence`` (the lines that decided it) and ``by``; the
        open row a renewal replaces is closed as "replaced".
        """
        now = time.time() if now is None else now
        with self._txn() as c:
            self._close_log(c, [ip], now, "replaced")
            c.execute("INSERT INTO ban_log (ip, rule, reason, source, by_whom, count, banned_at, "
                      "expires, evidence) VALUES (?,?,?,?,?,?,?,?,?)",
                      (ip, rule, reason, self.source, by or self.source, count, now, expires,
                       json.dumps([str(x)[:1000] for x in evidence])))
            c.execute(
                "INSERT INTO bans (ip, rule, reason, first_seen, last_seen, count, banned_at, "
                "expires, times_banned, active, source) VALUES (?,?,?,?,?,?,?,?,1,1,?) "
                "ON CONFLICT(ip) DO UPDATE SET rule = excluded.rule, reason = excluded.reason, "
                "first_seen = excluded.first_seen, last_seen = excluded.last_seen, "
                "count = excluded.count, expires = excluded.expires, source = excluded.source, "
                "banned_at = CASE WHEN bans.active THEN bans.banned_at "
                "ELSE excluded.banned_at END, "
                "times_banned = bans.times_banned + (1 - bans.active), active = 1, "
                "lifted_at = NULL, lifted_by = NULL, origin = NULL",
                (ip, rule, reason, first_seen, last_seen, count, now, expires, self.source))
            self._log_change(c, "ban", ip, expires, now)
            row = c.execute("SELECT * FROM bans WHERE ip = ?", (ip,)).fetchone()
        return _ban(row)

    def lift(self, ips: Iterable[str], by: str, now: float | None = None) -> list[Ban]:
        """Mark bans inactive; returns the rows that were active (as they were)."""
        now = time.time() if now is None else now
        lifted: list[Ban] = []
        with self._txn() as c:
            for ip in ips:
                row = c.execute("SELECT * FROM bans WHERE ip = ? AND active = 1",
                                (ip,)).fetchone()
                if row is None:
                    continue
                c.execute("UPDATE bans SET active = 0, lifted_at = ?, lifted_by = ? "
                          "WHERE ip = ?", (now, by, ip))
                self._close_log(c, [ip], now, by)
                self._log_change(c, "unban", ip, None, now)
                lifted.append(_ban(row))
        return lifted

    def record_remote(self, bans: Iterable[tuple[str, str, str, int, float, float | None, str]],
                      now: float | None = None) -> int:
        """Store bans decided by other cluster nodes in ONE transaction (a burst or a new
        node's start may bring 100,000): (ip, rule, reason, hits, decided, expires, origin).
        Returns how many rows were written."""
        now = time.time() if now is None else now
        rows = [(ip, rule, reason, decided, decided, hits, min(decided, now), expires, origin)
                for ip, rule, reason, hits, decided, expires, origin in bans]
        with self._txn() as c:
            c.executemany(
                "INSERT INTO bans (ip, rule, reason, first_seen, last_seen, count, banned_at, "
                "expires, times_banned, active, source, origin) "
                "VALUES (?,?,?,?,?,?,?,?,1,1,'cluster',?) "
                "ON CONFLICT(ip) DO UPDATE SET rule = excluded.rule, reason = excluded.reason, "
                "first_seen = excluded.first_seen, last_seen = excluded.last_seen, "
                "count = excluded.count, expires = excluded.expires, source = 'cluster', "
                "banned_at = CASE WHEN bans.active THEN bans.banned_at "
                "ELSE excluded.banned_at END, "
                "times_banned = bans.times_banned + (1 - bans.active), active = 1, "
                "lifted_at = NULL, lifted_by = NULL, origin = excluded.origin", rows)
        return len(rows)

    def lift_all(self, by: str, now: float | None = None) -> list[Ban]:
        """Mark every active ban inactive (flush); returns them."""
        now = time.time() if now is None else now
        with self._txn() as c:
            rows = c.execute("SELECT * FROM bans WHERE active = 1 ORDER BY banned_at").fetchall()
            c.execute("UPDATE bans SET active = 0, lifted_at = ?, lifted_by = ? "
                      "WHERE active = 1", (now, by))
            self._close_log(c, None, now, by)
            self._log_change(c, "flush", "", None, now)
        return [_ban(r) for r in rows]

    def prune(self, older_than: float) -> int:
        """Forget bans lifted before ``older_than`` and old change records; returns rows gone."""
        with self._txn() as c:
            n = c.execute("DELETE FROM bans WHERE active = 0 AND lifted_at < ?",
                          (older_than,)).rowcount
            n += c.execute("DELETE FROM ban_changes WHERE at < ?", (older_than,)).rowcount
            c.execute("DELETE FROM ban_log WHERE lifted_at < ?", (older_than,))  # history
        return n

    def prune_changes(self, older_than: float) -> int:
        """Drop change records older than ``older_than`` (the daemon has long followed them)."""
        with self._txn() as c:
            return c.execute("DELETE FROM ban_changes WHERE at < ?", (older_than,)).rowcount

    # -- reads --------------------------------------------------------------------------------
    def get(self, ip: str) -> Ban | None:
        """The row of ``ip`` (active or not)."""
        row = self._conn().execute("SELECT * FROM bans WHERE ip = ?", (ip,)).fetchone()
        return _ban(row) if row else None

    def active(self) -> list[Ban]:
        """Every active ban, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM bans WHERE active = 1 ORDER BY banned_at, ip").fetchall()
        return [_ban(r) for r in rows]

    def history(self, limit: int = 1000) -> list[Ban]:
        """Lifted bans, most recently lifted first."""
        rows = self._conn().execute("SELECT * FROM bans WHERE active = 0 "
                                    "ORDER BY lifted_at DESC LIMIT ?", (limit,)).fetchall()
        return [_ban(r) for r in rows]

    def due(self, now: float) -> list[Ban]:
        """Active bans whose expiry has come."""
        rows = self._conn().execute("SELECT * FROM bans WHERE active = 1 AND expires IS NOT "
                                    "NULL AND expires <= ? ORDER BY expires", (now,)).fetchall()
        return [_ban(r) for r in rows]

    def times_banned(self, ip: str) -> int:
        """How many times ``ip`` has been banned so far (0 if never)."""
        row = self._conn().execute("SELECT times_banned FROM bans WHERE ip = ?",
                                   (ip,)).fetchone()
        return int(row[0]) if row else 0

    def last_change(self) -> int:
        """The newest ``ban_changes`` sequence number (0 if none)."""
        row = self._conn().execute("SELECT MAX(seq) FROM ban_changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int) -> list[Change]:
        """Changes after ``seq`` made by other processes, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM ban_changes WHERE seq > ? AND pid != ? ORDER BY seq",
            (seq, os.getpid())).fetchall()
        return [Change(seq=r["seq"], at=r["at"], pid=r["pid"], action=r["action"], ip=r["ip"],
                       expires=r["expires"]) for r in rows]

    def count_by_rule(self) -> dict[str, int]:
        """Active bans per rule (for status)."""
        rows = self._conn().execute("SELECT rule, COUNT(*) FROM bans WHERE active = 1 "
                                    "GROUP BY rule ORDER BY rule").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def records(self, ip: str, limit: int = 100) -> list[BanRecord]:
        """The bans made of ``ip`` (``ban_log``), newest first."""
        rows = self._conn().execute("SELECT * FROM ban_log WHERE ip = ? ORDER BY banned_at "
                                    "DESC, id DESC LIMIT ?", (ip, limit)).fetchall()
        return [_record(r) for r in rows]

    def covering(self, ip: str) -> list[Ban]:
        """Active network bans (CIDR rows) that contain the address or network ``ip``."""
        import ipaddress

        try:
            target = ipaddress.ip_network(ip, strict=False)
        except ValueError:
            return []
        rows = self._conn().execute("SELECT * FROM bans WHERE active = 1 AND ip LIKE '%/%'")
        found = []
        for row in rows.fetchall():
            try:
                net = ipaddress.ip_network(row["ip"], strict=False)
            except ValueError:
                continue
            if net.version == target.version and net != target and target.subnet_of(
                    net):  # type: ignore[arg-type]
                found.append(_ban(row))
        return found
