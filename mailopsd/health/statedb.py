"""Blocker and job figures read from the state database (not from the blocker's code).

The blocker, `mailopsd bans` and the job runner already record everything the metrics need:
``bans`` (active bans by rule, how often each address was banned), ``job_runs`` (results,
durations) and ``log_positions`` (how far the blocker has read the mainlog). Reading them here
keeps the health package independent of the blocker's internals. The database is opened
read-only; a missing database or table gives no samples, never an error.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mailopsd.health.model import Samples

_EXIM_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
COUNT_PER_SCRAPE = 16 << 20  # mainlog bytes counted per scrape: a big log catches up, never stalls


@contextmanager
def _readonly(path: str) -> Iterator[sqlite3.Connection | None]:
    if not os.path.exists(path):
        yield None
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        yield conn
    finally:
        conn.close()


class StateFigures:
    """Samples for mailopsd_bans_*, mailopsd_job_* and mailopsd_log_* from state.db."""

    def __init__(self, db_path: str, mainlog: str, backend: str, follow_log: bool = True) -> None:
        self.db_path = db_path
        self.mainlog = mainlog
        self.backend = backend
        self.follow_log = follow_log  # the blocker is on: its mainlog position means something
        self._lines_total = 0
        self._counted: tuple[int, int] | None = None  # (inode, offset) counted up to
        self._lock = threading.Lock()

    def samples(self, now: float | None = None) -> Samples:
        """Every state-derived sample now; partial (or empty) when the database is not there."""
        now = time.time() if now is None else now
        out = Samples()
        out.values.update({"mailopsd_bans_active": {}, "mailopsd_bans_total": {}})
        try:
            with _readonly(self.db_path) as conn:
                if conn is not None:
                    self._bans(conn, out)
                    self._jobs(conn, out)
                    if self.follow_log:
                        self._log(conn, out, now)
        except sqlite3.Error:
            pass  # busy or mid-migration: this scrape has fewer samples, the next one catches up
        return out

    def _bans(self, conn: sqlite3.Connection, out: Samples) -> None:
        for rule, n in conn.execute(
                "SELECT rule, COUNT(*) FROM bans WHERE active = 1 GROUP BY rule"):
            out.set("mailopsd_bans_active", n, backend=self.backend, rule=rule)
        for rule, n in conn.execute("SELECT rule, SUM(times_banned) FROM bans GROUP BY rule"):
            out.set("mailopsd_bans_total", n or 0, rule=rule)

    def _jobs(self, conn: sqlite3.Connection, out: Samples) -> None:
        for job, result, n in conn.execute(
                "SELECT job, result, COUNT(*) FROM job_runs WHERE result != 'running' "
                "GROUP BY job, result"):
            out.set("mailopsd_job_runs_total", n, job=job, result=result)
        for job, finished in conn.execute(
                "SELECT job, MAX(finished) FROM job_runs WHERE result = 'ok' GROUP BY job"):
            out.set("mailopsd_job_last_success_timestamp_seconds", finished, job=job)
        for job, started, finished in conn.execute(
                "SELECT job, started, finished FROM job_runs WHERE id IN (SELECT MAX(id) FROM "
                "job_runs WHERE finished IS NOT NULL GROUP BY job)"):
            out.set("mailopsd_job_last_duration_seconds", max(0.0, finished - started), job=job)

    def _log(self, conn: sqlite3.Connection, out: Samples, now: float) -> None:
        row = conn.execute("SELECT ino, offset, updated FROM log_positions WHERE path = ? "
                           "ORDER BY updated DESC LIMIT 1", (self.mainlog,)).fetchone()
        if row is None:
            return
        ino, offset, updated = int(row[0]), int(row[1]), float(row[2])
        try:
            fd = os.open(self.mainlog, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            with self._lock:
                self._count_lines(fd, st.st_ino, ino, offset)
                out.set("mailopsd_log_lines_total", self._lines_total)
            unread = st.st_size - offset if st.st_ino == ino else st.st_size
            out.set("mailopsd_log_unread_bytes", max(0, unread))
            out.set("mailopsd_log_lag_seconds", self._lag(fd, st, ino, offset, updated, now))
        finally:
            os.close(fd)

    def _count_lines(self, fd: int, file_ino: int, ino: int, offset: int) -> None:
        """Add the lines between what was counted and the blocker's offset (same file only)."""
        if file_ino != ino:
            return
        start = 0
        if self._counted is not None and self._counted[0] == ino and self._counted[1] <= offset:
            start = self._counted[1]
        pos = start
        stop = min(offset, start + COUNT_PER_SCRAPE)
        while pos < stop:
            chunk = os.pread(fd, min(1 << 20, stop - pos), pos)
            if not chunk:
                break
            self._lines_total += chunk.count(b"\n")
            pos += len(chunk)
        self._counted = (ino, pos)

    @staticmethod
    def _lag(fd: int, st: os.stat_result, ino: int, offset: int, updated: float,
             now: float) -> float:
        """Age of the first line the blocker has not read yet (0 when it is at the end)."""
        if st.st_ino != ino:
            offset = 0  # rotated: the new file is unread from its start
        if st.st_size <= offset:
            return 0.0
        m = _EXIM_STAMP.match(os.pread(fd, 64, offset))
        if m:
            try:
                stamp = time.mktime(time.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S"))
                return max(0.0, now - stamp)
            except (ValueError, OverflowError):
                pass
        return max(0.0, now - updated)
