"""The copy-to-Sent tables of the state database (migration 4): recipients and pending copies.

Both sides are persisted so that a restart loses nothing: recipients read from the log wait
for their Sent copy (a deferred save arrives hours later), and a copy that appeared before its
recipients waits for them, each for a bounded time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from mailopsd.sent.reclog import RecipientsEntry


@dataclass(frozen=True)
class Recipients:
    """One stored recipients entry."""

    exim_id: str
    sender: str
    recipients: str
    count: int
    fixed: float | None


@dataclass(frozen=True)
class Pending:
    """A Sent copy waiting for its recipients."""

    user: str
    base: str
    sub: str
    name: str
    exim_id: str
    first_seen: float
    warned: bool


class SentStore:
    """Queries on one connection (one per thread, as StateDB wants)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add_recipients(self, entries: Iterable[RecipientsEntry], now: float) -> list[str]:
        """Store entries not seen before (the filter logs each delivery attempt); return
        the ids that are new."""
        new: list[str] = []
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for e in entries:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO sent_recipients (exim_id, sender, recipients, count, "
                    "logged) VALUES (?, ?, ?, ?, ?)",
                    (e.exim_id, e.sender, e.recipients_raw, e.count, now))
                if cur.rowcount:
                    new.append(e.exim_id)
        return new

    def recipients(self, exim_id: str) -> Recipients | None:
        """The entry for an id, or None."""
        row = self.conn.execute("SELECT exim_id, sender, recipients, count, fixed FROM "
                                "sent_recipients WHERE exim_id = ?", (exim_id,)).fetchone()
        return Recipients(*row) if row else None

    def mark_fixed(self, exim_id: str, user: str, now: float) -> None:
        """Record that the copy of ``exim_id`` was fixed; drop any pending row for it."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE sent_recipients SET fixed = ?, user = ? WHERE exim_id = ?",
                              (now, user, exim_id))
            self.conn.execute("DELETE FROM sent_pending WHERE exim_id = ? AND user = ?",
                              (exim_id, user))

    def add_pending(self, user: str, base: str, sub: str, name: str, exim_id: str,
                    now: float) -> None:
        """Remember a copy without recipients yet (keeps first_seen if already there)."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO sent_pending (user, base, sub, name, exim_id, first_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user, base) DO UPDATE SET "
                "sub = excluded.sub, name = excluded.name, exim_id = excluded.exim_id",
                (user, base, sub, name, exim_id, now))

    def drop_pending(self, user: str, base: str) -> None:
        """Forget a pending copy (fixed, not ours, or gone)."""
        with self.conn:
            self.conn.execute("DELETE FROM sent_pending WHERE user = ? AND base = ?",
                              (user, base))

    def pending(self, *, exim_id: str | None = None, user: str | None = None) -> list[Pending]:
        """Pending copies, optionally only those of one id or one user."""
        sql = "SELECT user, base, sub, name, exim_id, first_seen, warned FROM sent_pending"
        args: list[str] = []
        if exim_id is not None:
            sql += " WHERE exim_id = ?"
            args.append(exim_id)
        elif user is not None:
            sql += " WHERE user = ?"
            args.append(user)
        return [_pending(r) for r in self.conn.execute(sql, args)]

    def overdue(self, older_than: float) -> list[Pending]:
        """Pending copies first seen before ``older_than`` and not warned about yet."""
        rows = self.conn.execute(
            "SELECT user, base, sub, name, exim_id, first_seen, warned FROM sent_pending "
            "WHERE warned = 0 AND first_seen < ?", (older_than,))
        return [_pending(r) for r in rows]

    def mark_warned(self, user: str, base: str) -> None:
        """Record that the missing-recipients warning for a copy was logged."""
        with self.conn:
            self.conn.execute("UPDATE sent_pending SET warned = 1 WHERE user = ? AND base = ?",
                              (user, base))

    def prune(self, older_than: float) -> tuple[int, int]:
        """Forget recipients logged before ``older_than``; returns (never fixed, fixed)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            unfixed = self.conn.execute("DELETE FROM sent_recipients WHERE logged < ? AND "
                                        "fixed IS NULL", (older_than,)).rowcount
            fixed = self.conn.execute("DELETE FROM sent_recipients WHERE logged < ?",
                                      (older_than,)).rowcount
        return unfixed, fixed


def _pending(r: sqlite3.Row) -> Pending:
    first_seen: float = r[5]
    return Pending(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(first_seen),
                   bool(r[6]))
