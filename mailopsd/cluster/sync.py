"""The node's sync loop: one thread, one connection, push the outbox, pull by id, never stall.

Each cycle: push queued decisions and hits (one transaction each, ``ON CONFLICT (key) DO
NOTHING``), pull new ``bans`` rows by id (a NOTIFY only wakes the loop; rows are read from the
table, so one inserted by hand is seen), check them (``trust``), hand them to the blocker, then
store the cursor. The loop sleeps in ``select`` on the connection's socket and a wake-up pipe.

Store away: one ``cluster_store_down`` warning (then a reminder every ``REMIND`` seconds), a
new attempt every ``cluster.retry_interval``, and one ``cluster_store_up`` info event when it
is back. The blocker keeps enforcing and deciding; nothing here ever blocks it.

After a reconnect the pull starts from the cursor. If the store went back in time (a promoted
standby that had not received the newest rows), the cursor follows it back, the keys already
applied are skipped, and the outbox (kept ``outbox.RETAIN`` seconds) is pushed again.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mailopsd.cluster import pgschema, trust
from mailopsd.cluster.db import (
    BANS_CHANNEL,
    HITS_CHANNEL,
    SCHEMA,
    ClusterError,
    connect,
    first_line,
    psycopg,
)
from mailopsd.cluster.outbox import Outbox
from mailopsd.core.config.schema_cluster import ClusterConfig

POLL = 2.0  # a pull and a heartbeat at least this often, even without a NOTIFY
REMIND = 300.0
BATCH = 5000
GAP_WAIT = 30.0  # an id skipped by the sequence is looked for again this long
KEYS_KEEP = 3600.0
HITS_MAX = 100_000

BAN_COLUMNS = ("id, action, ip, rule, reason, hits, extract(epoch FROM decided)::float8, "
               "extract(epoch FROM expires)::float8, node, "
               "extract(epoch FROM inserted)::float8, key")


class SyncLoop:
    """Runs in the ``cluster-sync`` thread; see the module docstring."""

    def __init__(self, cfg: ClusterConfig, outbox: Outbox, log: Any,
                 sink: Callable[[], Any]) -> None:
        self.cfg = cfg
        self.node = cfg.node_name
        self.outbox = outbox
        self.log = log
        self.sink = sink  # -> the attached RemoteSink, or None
        self.hits: deque[tuple[str, str, float]] = deque(maxlen=HITS_MAX)
        self.conn: Any = None
        self.up: bool | None = None  # None: never connected yet
        self.down_since = 0.0
        self.reminded = 0.0
        self.last_id: int | None = None
        self.last_hit: int | None = None
        self.gaps: dict[int, float] = {}
        self.keys: dict[str, float] = {}  # store keys applied or pushed (no repeats)
        self.keys_pruned = time.time()
        self.notified = True
        self.repush = True
        self.applied = 0
        self.refused = 0
        self.stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def wake(self) -> None:
        """Make the loop run a cycle now (something was queued or attached)."""
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the pipe (after the thread ended)."""
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Until ``stop``: connect, cycle, and survive every store failure."""
        pg = psycopg()
        next_poll = 0.0
        while not self.stop.is_set():
            if self.conn is None:
                began = time.monotonic()
                try:
                    self._connect()
                    next_poll = 0.0
                except (pg.Error, ClusterError, OSError) as exc:
                    self._down(exc)
                    # attempts START every retry_interval (a slow refusal counts toward it)
                    self._sleep(max(0.05, float(self.cfg.retry_interval)
                                    - (time.monotonic() - began)))
                    continue
            try:
                now = time.monotonic()
                self._push()
                if self.notified or now >= next_poll:
                    self.notified = False
                    self._pull()
                if now >= next_poll:
                    next_poll = now + POLL
                    self._heartbeat()
                self._wait(max(0.0, next_poll - time.monotonic()))
            except (pg.Error, ClusterError, OSError) as exc:
                self._disconnect()
                self._down(exc)
            except Exception as exc:  # a bug: say so, keep going after a pause
                self.log.exception("cluster_sync_crashed", error=repr(exc))
                self._disconnect()
                self._sleep(float(self.cfg.retry_interval))
        self._disconnect()
        self.outbox.close()

    def _sleep(self, seconds: float) -> None:
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _wait(self, seconds: float) -> None:
        """Sleep until a NOTIFY, a wake-up or ``seconds``; a readable socket means news."""
        if self.outbox_waiting or self.hits or self.notified:
            # (a NOTIFY read during the last query already set `notified`: its bytes are gone
            # from the socket, so select() would not wake for it)
            seconds = 0.0
        ready, _, _ = select.select([self.conn.fileno(), self._wake_r], [], [], seconds)
        if self._wake_r in ready:
            self._drain_wake()
        if self.conn.fileno() in ready:
            self.conn.execute("SELECT 1")  # reads the NOTIFY (or finds the server gone)
            self.notified = True

    outbox_waiting = False

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        conn = connect(self.cfg)
        try:
            version = pgschema.current_version(conn)
            if version != pgschema.SCHEMA_VERSION:
                raise ClusterError(f"the store's schema is version {version}, this mailopsd "
                                   f"needs {pgschema.SCHEMA_VERSION}: run `mailopsd cluster "
                                   "init` as the database owner")
            conn.add_notify_handler(self._on_notify)
            conn.execute(f"LISTEN {BANS_CHANNEL}")
            conn.execute(f"LISTEN {HITS_CHANNEL}")
            from mailopsd import __version__

            conn.execute(f"INSERT INTO {SCHEMA}.nodes (name, version) VALUES (%s, %s) "
                         "ON CONFLICT (name) DO UPDATE SET last_seen = now(), "
                         "version = EXCLUDED.version", (self.node, __version__))
            row = conn.execute(f"SELECT role FROM {SCHEMA}.nodes WHERE name = %s",
                               (self.node,)).fetchone()
            me = conn.execute("SELECT current_user").fetchone()[0]
            superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = "
                                     "current_user").fetchone()[0]
            if row is not None and row[0] != me and not superuser:
                raise ClusterError(f"node name {self.node!r} belongs to role {row[0]!r}, "
                                   f"not {me!r}")
            top = conn.execute(f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.bans").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        if self.last_id is None:
            self.last_id = self.outbox.cursor("bans")
            self.last_hit = self.outbox.cursor("hits")
        if self.last_id is not None and top < self.last_id:
            # a promoted standby without the newest rows: follow it back; keys stop repeats
            self.log.warning("cluster_store_rewound", cursor=self.last_id, newest=top,
                             message="the store has fewer rows than this node applied "
                                     "(failover?): re-reading, queued decisions pushed again")
            self.last_id = top
            self.gaps.clear()
        self.repush = True
        self.notified = True
        if self.up is not True:
            waiting = self.outbox.waiting()
            if self.up is None:
                self.log.info("cluster_connected", node=self.node, queued=waiting)
            else:
                self.log.info("cluster_store_up", node=self.node, queued=waiting,
                              down_for=round(time.monotonic() - self.down_since, 1))
        self.up = True

    def _on_notify(self, _n: Any) -> None:
        self.notified = True

    def _disconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self.conn.close()
            self.conn = None

    def _down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.up is not False:
            self.up = False
            self.down_since = self.reminded = now
            self.log.warning("cluster_store_down", node=self.node, error=first_line(exc),
                             queued=self._queued(),
                             message="bans stay in force; this node keeps deciding and "
                                     "queues what it publishes until the store is back")
        elif now - self.reminded >= REMIND:
            self.reminded = now
            self.log.warning("cluster_store_still_down", node=self.node, error=first_line(exc),
                             queued=self._queued(), down_for=round(now - self.down_since))

    def _queued(self) -> int:
        try:
            return self.outbox.waiting()
        except Exception:  # a locked state database must not hide the store's state
            return -1

    # -- push ---------------------------------------------------------------------------------
    def _push(self) -> None:
        after = 0
        while True:
            rows = self.outbox.pending(after, BATCH, sent=self.repush)
            if not rows:
                break
            with self.conn.transaction():
                self.conn.cursor().executemany(
                    f"INSERT INTO {SCHEMA}.bans (action, ip, rule, reason, hits, decided, "
                    "expires, node, key) VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), "
                    "to_timestamp(%s), %s, %s) ON CONFLICT (key) DO NOTHING",
                    [(r.action, r.ip, r.rule, r.reason, r.hits, r.decided, r.expires,
                      self.node, r.key) for r in rows])
            for r in rows:
                self.keys[r.key] = time.time()
            self.outbox.sent([r.seq for r in rows])
            after = rows[-1].seq
        self.repush = False
        self.outbox_waiting = False
        if self.hits:
            batch = [self.hits.popleft() for _ in range(min(len(self.hits), BATCH))]
            try:
                with self.conn.transaction():
                    self.conn.cursor().executemany(
                        f"INSERT INTO {SCHEMA}.hits (node, rule, ip, seen) "
                        "VALUES (%s, %s, %s, to_timestamp(%s))",
                        [(self.node, rule, ip, when) for rule, ip, when in batch])
            except BaseException:
                self.hits.extendleft(reversed(batch))  # try again after the reconnect
                raise

    # -- pull ---------------------------------------------------------------------------------
    def _pull(self) -> None:
        sink = self.sink()
        if sink is None:
            return  # nothing applies rows yet: leave the cursor where it is
        if self.last_id is None:
            self._snapshot(sink)
        while True:
            now = time.time()
            gaps = [g for g, t in self.gaps.items() if now - t < GAP_WAIT]
            self.gaps = {g: self.gaps[g] for g in gaps}
            rows = self.conn.execute(
                f"SELECT {BAN_COLUMNS} FROM {SCHEMA}.bans WHERE id > %s OR id = ANY(%s) "
                "ORDER BY id LIMIT %s", (self.last_id, gaps, BATCH)).fetchall()
            if not rows:
                break
            self._apply(sink, [trust.Row(*r) for r in rows], now)
            if len(rows) < BATCH:
                break
        if self.cfg.share_hits:
            self._pull_hits(sink)

    def _apply(self, sink: Any, rows: list[trust.Row], now: float) -> None:
        good: list[trust.Row] = []
        assert self.last_id is not None
        for row in rows:
            if row.id > self.last_id:
                for missing in range(self.last_id + 1, min(row.id, self.last_id + 1001)):
                    self.gaps.setdefault(missing, now)
                self.last_id = row.id
            self.gaps.pop(row.id, None)
            if row.key in self.keys or row.node == self.node:
                continue
            self.keys[row.key] = now
            checked, why = trust.check(row, now)
            if checked is None:
                self.refused += 1
                self.log.warning("cluster_row_refused", ip=row.ip[:100], node=row.node,
                                 id=row.id, rule=row.rule[:50], why=why)
                continue
            good.append(checked)
        if good:
            sink.apply_remote(good)
            self.applied += len(good)
        self.outbox.set_cursor("bans", self.last_id)
        if now - self.keys_pruned > KEYS_KEEP or len(self.keys) > 200_000:
            self.keys_pruned = now
            self.keys = {k: t for k, t in self.keys.items() if now - t < KEYS_KEEP}

    def _snapshot(self, sink: Any) -> None:
        """A node's first sync: the bans in force now, then the log from the newest id on."""
        t0 = time.monotonic()
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            top = self.conn.execute(
                f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.bans").fetchone()[0]
            # COPY, parsed here: Debian's psycopg is the pure-Python build, whose per-value
            # loaders would spend seconds on 100,000 rows
            data = bytearray()
            with self.conn.cursor().copy(
                    "COPY (SELECT ban_id, ip, rule, extract(epoch FROM decided)::float8, "
                    "extract(epoch FROM expires)::float8, node "
                    f"FROM {SCHEMA}.current WHERE expires IS NULL OR expires > now() "
                    "ORDER BY ban_id) TO STDOUT") as copy:
                for block in copy:
                    data += block
        rows = []
        text = bytes(data).decode("utf-8", "replace")
        esc = _unescape if "\\" in text.replace("\\N", "") else str  # escapes are rare
        for line in text.splitlines():
            f = line.split("\t")
            if len(f) != 6:
                continue
            decided = float(f[3])
            rows.append(trust.Row(int(f[0]), "ban", esc(f[1]), esc(f[2]), "", 0, decided,
                                  None if f[4] == "\\N" else float(f[4]), esc(f[5]),
                                  decided, ""))
        now = time.time()
        t1 = time.monotonic()
        good = []
        for r in rows:
            checked, why = trust.check(r, now)
            if checked is None:
                self.log.warning("cluster_row_refused", ip=r.ip[:100], node=r.node[:63],
                                 id=r.id, why=why)
            else:
                good.append(checked)
        t2 = time.monotonic()
        if good:
            sink.apply_remote(good)
        self.last_id = top
        self.outbox.set_cursor("bans", top)
        self.log.info("cluster_snapshot_applied", bans=len(good), cursor=top,
                      read_s=round(t1 - t0, 3), check_s=round(t2 - t1, 3),
                      apply_s=round(time.monotonic() - t2, 3))

    def _pull_hits(self, sink: Any) -> None:
        if self.last_hit is None:
            row = self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.hits "
                                    "WHERE seen < now() - interval '1 day'").fetchone()
            self.last_hit = int(row[0])
        while True:
            rows = self.conn.execute(
                f"SELECT id, rule, ip, extract(epoch FROM seen)::float8 FROM {SCHEMA}.hits "
                "WHERE id > %s AND node <> %s ORDER BY id LIMIT %s",
                (self.last_hit, self.node, BATCH)).fetchall()
            if not rows:
                break
            self.last_hit = rows[-1][0]
            good = []
            now, keep = time.time(), float(self.cfg.hits_keep)
            for _id, rule, ip, seen in rows:
                canon, _why = trust.canonical_or_problem(ip)
                when = trust.hit_time(seen, now, keep)
                if canon is not None and when is not None:
                    good.append((str(rule)[:64], canon, when))
            sink.remote_hits(good)
            if len(rows) < BATCH:
                break
        self.outbox.set_cursor("hits", self.last_hit)

    def _heartbeat(self) -> None:
        self.conn.execute(
            f"UPDATE {SCHEMA}.nodes SET last_seen = now(), applied_id = %s, queued = %s "
            "WHERE name = %s", (self.last_id or 0, self.outbox.waiting(), self.node))
        self.conn.execute(f"DELETE FROM {SCHEMA}.hits WHERE seen < now() - "
                          "make_interval(secs => %s)", (float(self.cfg.hits_keep),))


def _unescape(text: str) -> str:
    """A COPY text-format field as the value (backslash escapes undone)."""
    if "\\" not in text:
        return text
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
