"""The live learner's records in the state database (migration 9).

``live_learn_daily``: per uid and local day, how many messages were learned and refused; the
daemon's daily limit is enforced from it. ``live_learned``: the digest of every message learned
live and the class it was learned as, so that the daily learn-spam job can skip what was
already learned (``learned_live``). Digests are sha256 over the message with CRLF read as LF:
Dovecot pipes what it stores, and the Maildir file holds the same bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable

KEEP_LEARNED = 30 * 86400  # a message still in Spam after a month is learned again: harmless
KEEP_DAILY = 14 * 86400


class Digest:
    """sha256 of a message fed in chunks, with every CRLF counted as LF."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._cr = False  # the previous chunk ended in CR

    def update(self, chunk: bytes) -> None:
        if self._cr:
            chunk = b"\r" + chunk
        self._cr = chunk.endswith(b"\r")
        if self._cr:
            chunk = chunk[:-1]
        self._h.update(chunk.replace(b"\r\n", b"\n"))

    def hexdigest(self) -> str:
        if self._cr:
            self._h.update(b"\r")
            self._cr = False
        return self._h.hexdigest()


def digest_of(data: bytes) -> str:
    """The digest of a whole message."""
    d = Digest()
    d.update(data)
    return d.hexdigest()


def learned_today(conn: sqlite3.Connection, uid: int, day: str) -> int:
    """How many messages of ``uid`` were learned live on ``day``."""
    row = conn.execute("SELECT learned FROM live_learn_daily WHERE uid = ? AND day = ?",
                       (uid, day)).fetchone()
    return int(row[0]) if row else 0


def add_daily(conn: sqlite3.Connection, uid: int, day: str, *, learned: int = 0,
              refused: int = 0) -> int:
    """Add to ``uid``'s counts for ``day``; returns the new learned count."""
    conn.execute("INSERT INTO live_learn_daily (uid, day, learned, refused) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (uid, day) DO UPDATE SET learned = learned + excluded.learned, "
                 "refused = refused + excluded.refused", (uid, day, learned, refused))
    return learned_today(conn, uid, day)


def refused_on(conn: sqlite3.Connection, day: str) -> dict[int, int]:
    """uid -> refused count on ``day``."""
    return {int(r[0]): int(r[1]) for r in conn.execute(
        "SELECT uid, refused FROM live_learn_daily WHERE day = ? AND refused > 0", (day,))}


def record_learned(conn: sqlite3.Connection, items: Iterable[tuple[str, str, int]],
                   now: float | None = None) -> None:
    """Remember (digest, class, uid) as learned now (the latest class wins)."""
    at = time.time() if now is None else now
    conn.executemany("INSERT INTO live_learned (digest, klass, uid, learned_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
                     "klass = excluded.klass, uid = excluded.uid, learned_at = excluded.learned_at",
                     [(d, k, u, at) for d, k, u in items])


def learned_live(conn: sqlite3.Connection, klass: str, digests: Iterable[str]) -> set[str]:
    """The digests among ``digests`` last learned live as ``klass``."""
    wanted = list(set(digests))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        part = wanted[i:i + 500]
        marks = ",".join("?" * len(part))
        found.update(r[0] for r in conn.execute(
            f"SELECT digest FROM live_learned WHERE klass = ? AND digest IN ({marks})",
            (klass, *part)))
    return found


def prune(conn: sqlite3.Connection, now: float | None = None) -> None:
    """Forget learned digests after KEEP_LEARNED and daily counts after KEEP_DAILY."""
    at = time.time() if now is None else now
    conn.execute("DELETE FROM live_learned WHERE learned_at < ?", (at - KEEP_LEARNED,))
    oldest = time.strftime("%Y-%m-%d", time.localtime(at - KEEP_DAILY))
    conn.execute("DELETE FROM live_learn_daily WHERE day < ?", (oldest,))


def split_learned_live(state: object, klass: str, paths: list[str]) -> tuple[list[str], int]:
    """For the daily learn-spam job: (the staged copies still to learn, how many were skipped
    because they were last learned live as ``klass``). Any problem reading the record (no
    database yet, an unreadable copy) only means learning them again, which is harmless."""
    digests: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                d = Digest()
                while chunk := f.read(1 << 16):
                    d.update(chunk)
            digests[path] = d.hexdigest()
        except OSError:
            continue
    if not digests:
        return paths, 0
    try:
        conn = state.connect()  # type: ignore[attr-defined]
        try:
            live = learned_live(conn, klass, digests.values())
        finally:
            conn.close()
    except Exception:  # the job must not fail for want of this shortcut
        return paths, 0
    keep = [p for p in paths if digests.get(p) not in live]
    return keep, len(paths) - len(keep)
