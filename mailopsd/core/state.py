"""The state database: one SQLite file under the state dir (WAL), versioned with migrations.

Holds job history, log-follower positions, bans and pending Sent work. Each thread or process
opens its own connection (``StateDB.connect``); SQLite's WAL lets the daemon and a ``run-job`` or
``bans`` command write concurrently, serialised by ``busy_timeout``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailopsd.core.errors import StateError

DB_NAME = "state.db"

# (version, purpose, SQL). Append only once a version has landed on main; never edit a landed one.
# Areas own their migrations: 1 core, 2 log follower, 3 blocker, 4 copy-to-Sent, 5 log sizes and
# blocker counts, 7 ban history and failure mails, 8 cluster, 9 live learning (numbers may have
# gaps: every one above the stored version runs, in this order).
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "job history", """
        CREATE TABLE job_runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            trigger TEXT NOT NULL,          -- schedule | catch-up | run-job | cli
            pid INTEGER NOT NULL,
            started REAL NOT NULL,
            finished REAL,
            result TEXT NOT NULL,           -- running | ok | failed | cancelled | interrupted
            counts TEXT NOT NULL DEFAULT '{}',
            error TEXT
        );
        CREATE INDEX job_runs_by_job ON job_runs (job, started);
    """),
    (2, "log follower positions", """
        CREATE TABLE log_positions (
            name TEXT PRIMARY KEY,          -- follower name, e.g. blocker:/var/log/exim4/mainlog
            path TEXT NOT NULL,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            offset INTEGER NOT NULL,
            first_line_hash TEXT NOT NULL,
            updated REAL NOT NULL
        );
    """),
    (3, "bans", """
        CREATE TABLE bans (
            ip TEXT PRIMARY KEY,            -- address or network (CIDR) as banned
            rule TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            banned_at REAL NOT NULL,
            expires REAL,                   -- NULL = permanent
            times_banned INTEGER NOT NULL DEFAULT 1,
            active INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT 'daemon',  -- daemon | cli
            lifted_at REAL,                 -- when the last ban ended (active = 0)
            lifted_by TEXT                  -- expired | cli | flush
        );
        CREATE INDEX bans_by_expiry ON bans (active, expires);
        CREATE TABLE ban_changes (          -- what `mailopsd bans` did, for the daemon to follow
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            pid INTEGER NOT NULL,
            action TEXT NOT NULL,           -- ban | unban | flush
            ip TEXT NOT NULL DEFAULT '',
            expires REAL
        );
    """),
    (4, "copy-to-Sent recipients and pending copies", """
        CREATE TABLE sent_recipients (
            exim_id TEXT PRIMARY KEY,       -- Exim's message id (the filter's $message_exim_id)
            sender TEXT NOT NULL,           -- $sender_address as logged
            recipients TEXT NOT NULL,       -- $recipients as logged (decoded)
            count INTEGER NOT NULL,         -- $recipients_count
            logged REAL NOT NULL,           -- when mailopsd read the line
            fixed REAL,                     -- when its Sent copy was fixed (NULL: not yet)
            user TEXT                       -- whose Sent copy was fixed
        );
        CREATE INDEX sent_recipients_by_logged ON sent_recipients (logged);
        CREATE TABLE sent_pending (
            user TEXT NOT NULL,
            base TEXT NOT NULL,             -- Maildir base name of a copy awaiting recipients
            sub TEXT NOT NULL,              -- new | cur, where it was last seen
            name TEXT NOT NULL,             -- its full file name when last seen
            exim_id TEXT NOT NULL,
            first_seen REAL NOT NULL,
            warned INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user, base)
        );
        CREATE INDEX sent_pending_by_id ON sent_pending (exim_id);
    """),
    (5, "log sizes for loss reports; the blocker's counts across restarts", """
        ALTER TABLE log_positions ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE blocker_counts (       -- saved with the log position, in one transaction
            ip TEXT PRIMARY KEY,
            hits TEXT NOT NULL,             -- rule:t,t;rule:t (log times still counted)
            newest REAL NOT NULL            -- newest of those times, for pruning
        );
        CREATE INDEX blocker_counts_by_newest ON blocker_counts (newest);
    """),
    (7, "ban history with evidence; failure mails sent", """
        CREATE TABLE ban_log (              -- one row per ban made (bans keeps only the latest)
            id INTEGER PRIMARY KEY,
            ip TEXT NOT NULL,
            rule TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,           -- daemon | cli
            by_whom TEXT NOT NULL DEFAULT '',  -- "mailopsd" or the admin's login (cli)
            count INTEGER NOT NULL DEFAULT 0,
            banned_at REAL NOT NULL,
            expires REAL,                   -- NULL = permanent
            evidence TEXT NOT NULL DEFAULT '[]',  -- JSON list: the log lines that decided it
            lifted_at REAL,
            lifted_by TEXT                  -- expired | cli | flush | replaced
        );
        CREATE INDEX ban_log_by_ip ON ban_log (ip, banned_at);
        -- dry runs were once recorded as runs: catch-up and `jobs` must not read them
        DELETE FROM job_runs WHERE counts LIKE '%"dry_run": true%';
        CREATE TABLE notify_sent (          -- failure mails: at most one per key per interval
            key TEXT PRIMARY KEY,           -- job id, or service:<id>
            sent_at REAL NOT NULL,
            suppressed INTEGER NOT NULL DEFAULT 0
        );
    """),
    (8, "cluster: ban origins, publish queue, applied cursor", """
        ALTER TABLE bans ADD COLUMN origin TEXT;  -- node that decided the ban; NULL = this host
        CREATE TABLE cluster_outbox (       -- decisions waiting for the shared store
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,       -- idempotency key in the store
            action TEXT NOT NULL,           -- ban | unban
            ip TEXT NOT NULL,
            rule TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            hits INTEGER NOT NULL DEFAULT 0,
            decided REAL NOT NULL,
            expires REAL,                   -- NULL = permanent
            sent REAL                       -- when it reached the store (kept a while)
        );
        CREATE TABLE cluster_cursor (       -- the last shared-store row id applied, per table
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
    """),
    (9, "live learning: per-user daily counts, messages learned live", """
        CREATE TABLE live_learn_daily (
            uid INTEGER NOT NULL,           -- the spool entry's owner as the kernel records it
            day TEXT NOT NULL,              -- local date YYYY-MM-DD
            learned INTEGER NOT NULL DEFAULT 0,
            refused INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (uid, day)
        );
        CREATE TABLE live_learned (
            digest TEXT PRIMARY KEY,        -- sha256 of the message, CRLF as LF (livelearn.digest)
            klass TEXT NOT NULL,            -- spam | ham: the class it was last learned as
            uid INTEGER NOT NULL,
            learned_at REAL NOT NULL
        );
        CREATE INDEX live_learned_by_time ON live_learned (learned_at);
    """),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class JobRun:
    """One row of job history."""

    id: int
    job: str
    trigger: str
    pid: int
    started: float
    finished: float | None
    result: str
    counts: Mapping[str, Any]
    error: str | None

    @property
    def duration(self) -> float | None:
        """Seconds the run took, or None while it runs."""
        return None if self.finished is None else self.finished - self.started


class StateDB:
    """Opens (creating and migrating) the state database under a directory."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self._migrated = False
        self._lock = threading.Lock()

    def connect(self) -> sqlite3.Connection:
        """A new connection (one per thread); migrates the schema on first use.

        Raises StateError if the database cannot be opened or is newer than this code.
        """
        try:
            os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as exc:
            # sqlite says only "unable to open database file": say what an admin must do
            hint = "; run as root" if os.geteuid() != 0 else ""
            raise StateError(f"cannot open state database {self.path}: {exc}{hint}") from exc
        with self._lock:
            if not self._migrated:
                migrate(conn, self.path)
                self._migrated = True
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), then closed."""
        conn = self.connect()
        try:
            with immediate(conn):
                yield conn
        finally:
            conn.close()

    # -- job history -----------------------------------------------------------------------
    def job_started(self, job: str, trigger: str, started: float | None = None) -> int:
        """Record a run as running; returns its id."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO job_runs (job, trigger, pid, started, result) "
                "VALUES (?, ?, ?, ?, 'running')",
                (job, trigger, os.getpid(), time.time() if started is None else started))
            return int(cur.lastrowid or 0)

    def job_finished(self, run_id: int, result: str, counts: Mapping[str, Any] | None = None,
                     error: str | None = None) -> None:
        """Record how a run ended."""
        with self.transaction() as c:
            c.execute("UPDATE job_runs SET finished = ?, result = ?, counts = ?, error = ? "
                      "WHERE id = ?",
                      (time.time(), result, json.dumps(dict(counts or {}), default=str), error,
                       run_id))

    def interrupt_stale_runs(self) -> int:
        """Mark 'running' rows whose process is gone as interrupted (after kill -9 or a crash)."""
        with self.transaction() as c:
            rows = c.execute("SELECT id, pid FROM job_runs WHERE result = 'running'").fetchall()
            stale = [r["id"] for r in rows if not pid_alive(r["pid"])]
            c.executemany("UPDATE job_runs SET result = 'interrupted', finished = started "
                          "WHERE id = ?", [(i,) for i in stale])
        return len(stale)

    def cancel_own_runs(self, error: str) -> int:
        """Mark this process's still-running rows as cancelled (used when stopping)."""
        with self.transaction() as c:
            return c.execute("UPDATE job_runs SET result = 'cancelled', finished = ?, error = ? "
                             "WHERE result = 'running' AND pid = ?",
                             (time.time(), error, os.getpid())).rowcount

    def last_run(self, job: str, result: str | None = None) -> JobRun | None:
        """The newest run of a job (optionally only with a given result)."""
        sql = "SELECT * FROM job_runs WHERE job = ?"
        args: list[Any] = [job]
        if result:
            sql += " AND result = ?"
            args.append(result)
        conn = self.connect()
        try:
            row = conn.execute(sql + " ORDER BY started DESC, id DESC LIMIT 1", args).fetchone()
        finally:
            conn.close()
        return _job_run(row) if row else None

    def history(self, job: str | None = None, limit: int = 50) -> list[JobRun]:
        """Newest first."""
        conn = self.connect()
        try:
            if job:
                rows = conn.execute("SELECT * FROM job_runs WHERE job = ? ORDER BY started DESC "
                                    "LIMIT ?", (job, limit)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM job_runs ORDER BY started DESC LIMIT ?",
                                    (limit,)).fetchall()
        finally:
            conn.close()
        return [_job_run(r) for r in rows]

    def prune_history(self, older_than: float) -> int:
        """Delete finished runs that started before the given time; returns how many."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM job_runs WHERE started < ? AND result != 'running'",
                            (older_than,))
            return cur.rowcount


class PerThread:
    """One SQLite connection to the state database per thread (sqlite3 objects are per-thread)."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        self._local = threading.local()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use. Raises StateError."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.state.connect()
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@contextmanager
def immediate(conn: sqlite3.Connection, what: str = "") -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection; ROLLBACK if the body raises.

    Raises StateError (naming ``what``) if the write lock cannot be taken.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        where = f"{what}: " if what else ""
        raise StateError(f"{where}cannot write the state database: {exc}") from exc
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _job_run(row: sqlite3.Row) -> JobRun:
    return JobRun(id=row["id"], job=row["job"], trigger=row["trigger"], pid=row["pid"],
                  started=row["started"], finished=row["finished"], result=row["result"],
                  counts=json.loads(row["counts"] or "{}"), error=row["error"])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; another user's too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def split_sql(script: str) -> list[str]:
    """Split a script into statements the way SQLite parses them (``;`` in comments is fine).

    executescript() would COMMIT the migration's surrounding transaction, so statements are run
    one by one inside it instead.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
            part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()):
        statements.append(buffer.strip())
    return statements


def migrate(conn: sqlite3.Connection, path: str = "") -> int:
    """Bring the schema up to SCHEMA_VERSION; returns the version found before.

    Raises StateError when the database is newer than this code (a downgrade).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(f"state database {path} has schema {version}, newer than this "
                             f"mailopsd ({SCHEMA_VERSION}); refusing to touch it")
        for number, _purpose, sql in MIGRATIONS:
            if number > version:
                for statement in split_sql(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version
