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
  ``on_lines`` returns, so a restart resumes exactly: no line twice, none missed, also when the
  log rotated while stopped (the rest of ``mainlog.1``, found by inode and first line, is read
  first). If ``on_lines`` raises, the same lines are delivered again at the next poll.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB
from mailopsd.logtail.reader import Reader, find_rotated, first_line_hash, open_regular


class LogFollower:
    """Delivers the complete new lines of ``path`` to ``on_lines``; see the module docstring."""

    def __init__(self, name: str, path: str, state: StateDB,
                 on_lines: Callable[[list[str]], None], *, poll_interval: float = 1.0,
                 max_line: int = 8192 + 1024, start_at_end: bool = False,
                 drain_grace: float = 5.0) -> None:
        """``start_at_end``: with no saved position, skip what the file already holds."""
        self.name = name
        self.path = os.path.abspath(path)
        self.state = state
        self.on_lines = on_lines
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.start_at_end = start_at_end
        self.drain_grace = drain_grace
        self.log = get_logger("follow")
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
        if not os.path.lexists(self.path):
            # e.g. mailopsd installed before Exim: keep running and pick the log up when it
            # shows (inotify if the directory exists, else stat polling)
            self.log.warning("log_waiting", name=self.name, path=self.path,
                             message="the log does not exist yet; waiting for it to appear")
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
                self._cur = self._open_path(0)
                if self._cur is not None:
                    self._save(self._cur)
            # a truncation is looked for before reading, and again after each chunk read
            # (it may happen meanwhile): never deliver bytes of a file rewritten under us
            for _ in range(3):
                if self._cur is None:
                    return n
                if self._truncated(self._cur):
                    n += self._on_truncated(self._cur)
                    continue
                got, clean = self._drain(self._cur, check=True)
                n += got
                if clean:
                    break
            return n + self._check_rotated()

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

    def _on_truncated(self, cur: Reader) -> int:
        """copytruncate (or ``: > log``): read the unread tail from the copy, restart at 0."""
        copy = find_rotated(self.path, None, cur.hash, cur.offset, self.max_line)
        self.log.warning("log_truncated", name=self.name, path=self.path, offset=cur.offset,
                         recovered_from=copy.path if copy else None)
        n = 0
        cur.close()
        self._cur = None
        if copy is not None:
            self._cur = copy
            self._save(copy)  # a crash now resumes in the copy
            n = self._drain(copy)[0]
            copy.close()
        self._cur = self._open_path(0)
        if self._cur is not None:
            self._save(self._cur)
        return n

    def _check_rotated(self) -> int:
        """The name now points to another file: drain the old one to EOF, then switch."""
        cur = self._cur
        if cur is None:
            return 0
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0  # renamed with nocreate: keep reading the old file until a new one shows
        except OSError as exc:
            self._warn_path(str(exc))
            return 0
        if (st.st_dev, st.st_ino) == (cur.dev, cur.ino):
            return 0
        n = self._drain(cur)[0]  # whatever was written to the old file up to now
        new = self._open_path(0)
        if new is None:
            return n
        self.log.info("log_rotated", name=self.name, path=self.path, old_inode=cur.ino,
                      new_inode=new.ino, old_offset=cur.offset)
        self._retire(cur)
        self._cur = new
        self._save(new)
        return n + self._drain(new, check=True)[0]

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
            return None
        except OSError as exc:
            self._warn_path(str(exc))
            return None
        self._bad_path_warned = False
        return Reader(fd, self.path, offset, self.max_line)

    def _warn_path(self, error: str) -> None:
        if not self._bad_path_warned:
            self._bad_path_warned = True
            self.log.warning("log_unreadable", name=self.name, path=self.path, error=error)

    # -- positions ----------------------------------------------------------------------------
    def _resume(self) -> None:
        """Position the reader where the last run stopped (see the module docstring)."""
        self._resumed = True
        row = self._conn().execute("SELECT * FROM log_positions WHERE name = ?",
                                   (self.name,)).fetchone()
        if row is not None and row["path"] != self.path:
            row = None  # the configured file changed: its old position means nothing
        if row is None:
            self._cur = self._open_path(0)
            if self._cur is not None:
                if self.start_at_end:
                    self._cur.seek_end()
                self._save(self._cur)
            self.log.info("log_follow_started", name=self.name, path=self.path,
                          offset=self._cur.offset if self._cur else None)
            return
        dev, ino, offset, h = row["dev"], row["ino"], row["offset"], row["first_line_hash"]
        cur = self._open_path(offset)
        if cur is not None and (cur.dev, cur.ino) == (dev, ino):
            size = os.fstat(cur.fd).st_size
            now_hash = first_line_hash(cur.fd, self.max_line)
            if size >= offset and (not h or now_hash in (h, "")):
                cur.hash = h or now_hash
                self._cur = cur
                self.log.info("log_follow_resumed", name=self.name, path=self.path,
                              offset=offset)
                return
            # truncated while stopped: the copy holds the tail; the file restarts at 0
            copy = find_rotated(self.path, None, h, offset, self.max_line)
            cur.close()
            cur = None
        else:
            # rotated while stopped: the file we were reading has another name now
            copy = find_rotated(self.path, (dev, ino), h, offset, self.max_line)
            if cur is not None:
                cur.close()
        if copy is not None:
            self.log.info("log_follow_resumed", name=self.name, path=copy.path, offset=offset,
                          rotated=True)
            self._cur = copy  # drained first; then _check_rotated switches to the new file
            return
        self.log.warning("log_position_lost", name=self.name, path=self.path, offset=offset,
                         inode=ino)
        self._cur = self._open_path(0)
        if self._cur is not None:
            self._save(self._cur)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.state.connect()
        return conn

    def _save(self, r: Reader) -> None:
        if not r.hash:
            r.hash = first_line_hash(r.fd, self.max_line)
        self._conn().execute(
            "INSERT INTO log_positions (name, path, dev, ino, offset, first_line_hash, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET path = excluded.path, "
            "dev = excluded.dev, ino = excluded.ino, offset = excluded.offset, "
            "first_line_hash = excluded.first_line_hash, updated = excluded.updated",
            (self.name, self.path, r.dev, r.ino, r.offset, r.hash, time.time()))

