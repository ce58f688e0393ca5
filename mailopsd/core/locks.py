"""File locks shared by processes: a job's lock, the daemon's pid lock, the Bayes lock.

An exclusive, non-blocking flock that records the holder's pid, so the daemon and a command run
from a shell (``mailopsd run-job``, ``mailopsd bayes restore``) exclude each other and can say who
holds it.
"""

from __future__ import annotations

import fcntl
import os

from mailopsd.core.errors import JobBusyError


class FileLock:
    """An exclusive, non-blocking flock on a file that also records the holder's pid."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raises JobBusyError if another run holds it."""
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise JobBusyError(f"{self.what} is already running{holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def what(self) -> str:
        """What the lock guards, for messages."""
        return os.path.basename(self.path).rsplit(".", 1)[0]

    def holder(self) -> int | None:
        """The pid written by the current holder, if any."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether some process holds the lock right now (used by status)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def job_lock(run_dir: str, job: str) -> FileLock:
    """The lock a job's runs share: <run_dir>/locks/<job>.lock."""
    return FileLock(os.path.join(run_dir, "locks", f"{job}.lock"))


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
