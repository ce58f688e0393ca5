"""LogFollower: follow a log file by name, surviving rotation and restarts, losing no line.

- watchdog (inotify on the directory) wakes the reader at once; a stat every ``poll_interval``
  is the fallback (and the only mechanism when the directory cannot be watched);
- rename rotation (Debian's ``nocreate``: the new file appears only at Exim's next write): the old
  file stays open and is drained to EOF before switching, and is read a little longer in case a
  writer that opened it just before the rename still appends;
- copytruncate (size below what was read, or a new first line) and replaced files are detected;
  the tail between the last read and the truncation is recovered from the copy (``mainlog.1``);
- only complete lines are delivered; a line longer than ``max_line`` is cut to it (warning
  ``log_line_too_long``); bytes are decoded as UTF-8 with replacement characters;
- (device, inode, offset, sha256 of the first line) are saved in ``log_positions`` after
  ``on_lines`` returns, in one transaction with whatever ``on_save`` writes (the blocker's
  counts: a line's effect and its position commit together), so a restart resumes exactly: no
  line twice, none missed. If ``on_lines`` raises, the same lines are delivered again;
- missed rotations (down or slow across several logrotate runs, ``delaycompress``,
  ``copytruncate``): the file last read is found among the rotated copies, compressed or not
  (``rotated.catch_up``), its rest is read, then every newer copy whole, oldest first, then the
  live file. What is gone for good is one ``log_data_lost`` event with the bytes known lost;
- a log that does not exist (yet) is one ``log_missing`` event, and ``log_appeared`` when it does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB, immediate
from mailopsd.logtail.chain import RotationChain
from mailopsd.logtail.reader import Reader, first_line_hash, open_regular
from mailopsd.logtail.rotated import catch_up

Writer = Callable[[sqlite3.Connection], None]
WAIT_MARGIN = 2.0  # seconds: see poll_once


class LogFollower(RotationChain):
    """Delivers the complete new lines of ``path`` to ``on_lines``; see the module docstring."""

    def __init__(self, name: str, path: str, state: StateDB,
                 on_lines: Callable[[list[str]], None], *, poll_interval: float = 1.0,
                 max_line: int = 8192 + 1024, start_at_end: bool = False,
                 drain_grace: float = 5.0,
                 on_save: Callable[[], Writer | None] | None = None) -> None:
        """``start_at_end``: with no saved position, skip what the file already holds.
        ``on_save()`` runs before each position save, outside any transaction (it may take the
        caller's locks), and returns a writer run inside the save's transaction (or None)."""
        self.name = name
        self.path = os.path.abspath(path)
        self.state = state
        self.on_lines = on_lines
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.start_at_end = start_at_end
        self.drain_grace = drain_grace
        self.on_save = on_save
        self.log = get_logger("follow")
        self._later: list[str] = []  # rotated copies still to read whole before the live file
        self._later_ids: dict[str, tuple[int, int]] = {}  # their (dev, inode) when listed
        self._moved = False
        self._missing = False  # log_missing said, log_appeared not yet
        self._waiting_since: float | None = None  # nothing open: since when it is missing
        self._saved_at = time.time()
        self._cur: Reader | None = None
        self._retired: list[tuple[Reader, float]] = []  # old files read a little longer
        self._resumed = False
        self._lock = threading.RLock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._bad_path_warned = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Resume from the saved position, then follow in a thread; raises StateError."""
        with self._lock:
            if not self._resumed:
                self._resume()
        self._stop.clear()
        # a log that does not exist yet (mailopsd installed before Exim) is one log_missing
        # event from the thread; it is picked up when it shows (inotify, else stat polling)
        self._start_watch()
        self._thread = threading.Thread(target=self._run, name=f"follow:{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread and the watch, save the position, close the files."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(max(0.0, deadline - time.monotonic()))
            self._observer = None
        # on_lines may still run past the deadline: then the thread keeps its files (it is a
        # daemon thread; the position it saves after each batch stays right)
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self.log.warning("log_follow_stop_timeout", name=self.name, path=self.path)
            return
        try:
            if self._cur is not None:
                self._save(self._cur)
                self._cur.close()
                self._cur = None
            for r, _ in self._retired:
                r.close()
            self._retired = []
            self._resumed = False
        finally:
            self._lock.release()
        self._close_conn()

    def alive(self) -> bool:
        """Whether the following thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Make the thread poll now (watchdog events call this)."""
        self._wake.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.poll_once()
                except Exception as exc:  # a bug or on_lines failing: retry, never die
                    self.log.exception("log_follow_failed", name=self.name, path=self.path,
                                       error=repr(exc))
                self._wake.wait(self.poll_interval)
        finally:
            self._close_conn()

    def _close_conn(self) -> None:
        """Close this thread's state database connection, if it opened one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _start_watch(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            prefix = os.path.basename(self.path)
            follower = self

            class Handler(FileSystemEventHandler):
                def on_any_event(self, event: Any) -> None:
                    for p in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
                        if os.path.basename(os.fsdecode(p or "")).startswith(prefix):
                            follower.wake()
                            return

            observer = Observer()
            observer.schedule(Handler(), os.path.dirname(self.path), recursive=False)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except Exception as exc:  # no directory yet, inotify limits: stat polling still works
            self._observer = None
            self.log.warning("log_watch_unavailable", name=self.name, path=self.path,
                             error=str(exc), poll_interval=self.poll_interval)

    # -- reading ------------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Read every complete new line, deliver, save the position; returns lines delivered.

        Raises whatever ``on_lines`` raises (the lines are then delivered again next time).
        """
        with self._lock:
            if not self._resumed:
                self._resume()
            n = self._drain_retired()
            if self._cur is None:
                if self._waiting_since is not None:
                    # rotated before we ever opened it (logrotate ran while we waited for the
                    # file to appear): its copies written since then come first
                    # file times come from the kernel's coarse clock (a few ms behind
                    # time.time()): a copy written just as we began waiting must count; nothing
                    # was read before, so a margin can never read a line twice
                    found = catch_up(self.path, None, "", 0, self.max_line,
                                     self._waiting_since - WAIT_MARGIN)
                    self._later, self._later_ids = found.later, found.ids
                    self._cur = self._next_copy()
                if self._cur is None:
                    self._cur = self._open_path(0)
                if self._cur is not None:
                    self._waiting_since = None
                    self._save(self._cur)
            # a truncation is looked for before reading, and again after each chunk read
            # (it may happen meanwhile): never deliver bytes of a file rewritten under us
            for _ in range(3):
                if self._cur is None:
                    return n
                live = self._cur.path == self.path  # rotated copies are not truncated
                if live and self._truncated(self._cur):
                    n += self._on_truncated(self._cur)
                    continue
                got, clean = self._drain(self._cur, check=live)
                n += got
                if clean:
                    break
            for _ in range(1000):  # each round moves to a newer file; bounded all the same
                got, moved = self._check_rotated()
                n += got
                if not moved:
                    break
            return n

    def _drain(self, r: Reader, save: bool = True, check: bool = False) -> tuple[int, bool]:
        """Deliver r's complete lines up to EOF, chunk by chunk, saving after each.

        Returns (lines delivered, True); with ``check``, stops before delivering a chunk read
        from a file found truncated meanwhile and returns (lines, False).
        """
        total = 0
        while True:
            snap = r.snapshot()
            raw = r.read_chunk()
            if raw is None:
                return total, True
            if check and self._truncated(r):
                r.restore(snap)
                return total, False
            for offset, length in r.take_too_long():
                self.log.warning("log_line_too_long", name=self.name, path=self.path,
                                 offset=offset, length=length, kept=self.max_line)
            if not raw:
                continue
            lines = [b.decode("utf-8", "replace") for b in raw]
            try:
                self.on_lines(lines)
            except BaseException:
                r.restore(snap)
                raise
            total += len(lines)
            if save:
                self._save(r)

    def _truncated(self, r: Reader) -> bool:
        """Whether r's file shrank below what was read, or got a different first line."""
        if os.fstat(r.fd).st_size < r.pos:
            return True
        if not r.hash:
            r.hash = first_line_hash(r.fd, self.max_line)
            return False
        return first_line_hash(r.fd, self.max_line) not in (r.hash, "")

    def position(self) -> tuple[int, int, int] | None:
        """(device, inode, offset) of the file being read now, None before it exists."""
        with self._lock:
            cur = self._cur
            return None if cur is None else (cur.dev, cur.ino, cur.offset)

    def _retire(self, r: Reader) -> None:
        self._retired.append((r, time.monotonic() + self.drain_grace))

    def _drain_retired(self) -> int:
        n, keep = 0, []
        for r, deadline in self._retired:
            n += self._drain(r, save=False)[0]
            if time.monotonic() < deadline:
                keep.append((r, deadline))
                continue
            if r.pending_bytes():
                self.log.warning("log_partial_line_dropped", name=self.name, path=self.path,
                                 inode=r.ino, length=r.pending_bytes())
            r.close()
        self._retired = keep
        return n

    def _open_path(self, offset: int) -> Reader | None:
        try:
            fd = open_regular(self.path)
        except FileNotFoundError:
            self._note_missing(following=self._cur.path if self._cur else None)
            return None
        except OSError as exc:
            self._warn_path(str(exc))
            return None
        self._bad_path_warned = False
        self._note_present()
        return Reader(fd, self.path, offset, self.max_line)

    def _note_missing(self, following: str | None) -> None:
        """The log's name does not exist: say so once (a warning when nothing at all is being
        read: Exim not installed or not started yet), not at every poll."""
        if self._missing:
            return
        self._missing = True
        if following is None and self._waiting_since is None:
            self._waiting_since = time.time()
        log = self.log.warning if following is None else self.log.info
        log("log_missing", name=self.name, path=self.path, following=following,
            message="the log does not exist (yet); waiting for it to appear")

    def _note_present(self) -> None:
        if self._missing:
            self._missing = False
            self.log.info("log_appeared", name=self.name, path=self.path)

    def _warn_path(self, error: str) -> None:
        if not self._bad_path_warned:
            self._bad_path_warned = True
            self.log.warning("log_unreadable", name=self.name, path=self.path, error=error)

    # -- positions ----------------------------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.state.connect()
        return conn

    def _save_waiting(self, since: float) -> None:
        """Nothing to read yet: remember since when (a restart then reads what logrotate
        made of the log meanwhile, instead of starting at the live file)."""
        with immediate(self._conn(), "log position"):
            self._conn().execute(
                "INSERT INTO log_positions (name, path, dev, ino, offset, first_line_hash, "
                "updated, size) VALUES (?, ?, 0, 0, 0, '', ?, 0) ON CONFLICT (name) DO NOTHING",
                (self.name, self.path, since))

    def _save(self, r: Reader) -> None:
        """Save r's position, and what ``on_save`` writes, in one transaction."""
        if not r.hash:
            r.hash = r.line_hash()
        conn = self._conn()
        now = time.time()
        writer = self.on_save() if self.on_save is not None else None
        with immediate(conn, "log position"):
            conn.execute(
                "INSERT INTO log_positions (name, path, dev, ino, offset, first_line_hash, "
                "updated, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET path = excluded.path, dev = excluded.dev, ino = excluded.ino, "
                "offset = excluded.offset, first_line_hash = excluded.first_line_hash, "
                "updated = excluded.updated, size = excluded.size",
                (self.name, self.path, r.dev, r.ino, r.offset, r.hash, now, r.size()))
            if writer is not None:
                writer(conn)
        self._saved_at = now

