"""One lock, shared by processes, around every change of bans (state database + kernel).

``mailopsd bans`` changes the state database first, then the kernel, and holds this lock across
both; the daemon takes it around its kernel check (``verify``) and each ban it applies, after
reading what the command changed. So the daemon never sees the kernel without a ban while its own
view still holds it, and never puts back an address the admin has just removed or flushed.

A blocking ``flock`` on ``<run_dir>/locks/bans.lock``, re-entrant within one thread, with a
deadline: a holder that hangs makes the waiter fail with StateError, never hang for ever.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mailopsd.core.errors import StateError

WAIT = 30.0


class BanLock:
    """The cross-process bans lock; ``with lock.held(): ...``."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, "locks", "bans.lock")
        self._local = threading.local()
        self._mutex = threading.Lock()  # flock is per open file: threads queue here first

    @contextmanager
    def held(self, wait: float = WAIT) -> Iterator[None]:
        """Hold the lock for the body; raises StateError after ``wait`` seconds of waiting."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        deadline = time.monotonic() + wait
        if not self._mutex.acquire(timeout=wait):
            raise StateError(f"bans lock {self.path}: busy for {wait:.0f}s")
        try:
            fd = self._take(deadline, wait)
        except BaseException:
            self._mutex.release()
            raise
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            os.close(fd)  # closing drops the flock
            self._mutex.release()

    def _take(self, deadline: float, wait: float) -> int:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"bans lock {self.path}: {exc}") from exc
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StateError(f"bans lock {self.path}: held by another process "
                                     f"for more than {wait:.0f}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
