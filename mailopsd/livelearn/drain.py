"""The daemon's side of the spool: verified entries, the owner from the kernel, staged copies.

Root works in spool_dir only through a descriptor of that directory (verified at start: a real
directory, root's, mode 1733). Every name is ``lstat``-ed and opened with
``O_NOFOLLOW|O_NONBLOCK`` relative to it, then ``fstat``-ed: a regular file with one link, whose
owner (``st_uid``) is the submitting user. A symlink, a FIFO, a hard link, an unknown name or a
file that changed owner between the checks is refused and removed (root may remove anything in
its sticky directory; removing a link never touches its target). Content is read from the
verified descriptor into a private staging copy for the Bayes owner: sa-learn never sees a path
a user controls.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mailopsd.core.errors import MailopsError
from mailopsd.livelearn import spool
from mailopsd.livelearn.store import Digest

_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
STALE_TMP = 3600.0  # a half-written entry older than this was left by a killed learn-enqueue
CHUNK = 1 << 16


class SpoolError(MailopsError):
    """The spool directory is missing, unsafe or cannot be created."""


@dataclass
class Entry:
    """One pending message: whose (kernel's owner), which class, when queued."""

    name: str
    uid: int
    klass: str
    queued_ns: int
    size: int = 0
    digest: str = ""
    staged: str = ""  # the staging copy's absolute path once copied


@dataclass
class Scan:
    """What one look at the spool found."""

    entries: list[Entry] = field(default_factory=list)
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)  # (uid, reason) markers
    markers: list[str] = field(default_factory=list)  # refusal marker names, to remove
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (name, uid, why)


class Spool:
    """spool_dir as root sees it; ``ensure()`` first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def ensure(self) -> None:
        """Create spool_dir (and parents, 0755) and .daily; check and open it. Raises SpoolError."""
        try:
            self._make_parents()
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.path, 0o700)
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SpoolError(f"cannot create or open live-learn.spool_dir {self.path}: "
                             f"{exc}") from exc
        st = os.fstat(fd)
        if st.st_uid != 0:
            os.close(fd)
            raise SpoolError(f"live-learn.spool_dir {self.path} is owned by uid {st.st_uid}, "
                             "not root: refusing to use it")
        if stat.S_IMODE(st.st_mode) != spool.SPOOL_MODE or st.st_gid != 0:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, spool.SPOOL_MODE)
        with contextlib.suppress(FileExistsError):
            os.mkdir(spool.DAILY_DIR, 0o755, dir_fd=fd)
        dst = os.stat(spool.DAILY_DIR, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(dst.st_mode) or dst.st_uid != 0:
            os.close(fd)
            raise SpoolError(f"{self.path}/{spool.DAILY_DIR} is not root's directory")
        os.chmod(spool.DAILY_DIR, 0o755, dir_fd=fd, follow_symlinks=False)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd

    def _make_parents(self) -> None:
        """Create missing parents 0755 whatever the umask (the unit's is 0077): every user's
        learn-enqueue must reach spool_dir. Existing parents are left as they are."""
        missing: list[str] = []
        parent = os.path.dirname(self.path.rstrip("/")) or "/"
        while not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
                os.chmod(path, 0o755, follow_symlinks=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def scan(self, now: float | None = None) -> Scan:
        """Classify every name in the spool (nothing is opened or removed here)."""
        at = time.time() if now is None else now
        out = Scan()
        for name in os.listdir(self.fd):
            if name == spool.DAILY_DIR:
                continue
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if name.startswith(spool.TMP_PREFIX):
                if at - st.st_mtime > STALE_TMP:
                    out.rejected.append((name, st.st_uid, "stale_tmp"))
                continue
            parsed = spool.parse_name(name)
            why = ("not_regular" if not stat.S_ISREG(st.st_mode) else
                   "hard_link" if st.st_nlink != 1 else
                   "unknown_name" if parsed is None else "")
            if why or parsed is None:
                out.rejected.append((name, st.st_uid, why or "unknown_name"))
            elif parsed[0] == "refused":
                out.refused[(st.st_uid, parsed[1])] += 1
                out.markers.append(name)
            else:
                out.entries.append(Entry(name, st.st_uid, parsed[1], parsed[2], st.st_size))
        out.entries.sort(key=lambda e: (e.queued_ns, e.name))
        return out

    def pending(self) -> int:
        """How many learn entries are in the spool now."""
        return sum(1 for n in os.listdir(self.fd)
                   if (p := spool.parse_name(n)) is not None and p[0] == "learn")

    def copy(self, entry: Entry, staging: Any, max_size: int) -> str:
        """Copy a verified entry into ``staging`` (sets size, digest, staged); "" when done,
        else why it is refused: not_regular, hard_link, owner_changed, size, empty.

        Raises OSError when it cannot be read (the entry is then kept and tried again).
        """
        try:
            fd = os.open(entry.name, _O_READ, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink, a FIFO/socket
                return "not_regular"
            raise
        try:
            st = os.fstat(fd)
            why = ("not_regular" if not stat.S_ISREG(st.st_mode) else
                   "hard_link" if st.st_nlink != 1 else
                   "owner_changed" if st.st_uid != entry.uid else
                   "size" if max_size and st.st_size > max_size else
                   "empty" if st.st_size == 0 else "")
            if why:
                return why
            name, out = staging.create("e")
            digest, size = Digest(), 0
            try:
                while chunk := os.read(fd, CHUNK):
                    size += len(chunk)
                    if max_size and size > max_size:  # grew after the fstat
                        break
                    digest.update(chunk)
                    staging.write(out, chunk)
            finally:
                os.close(out)
            if max_size and size > max_size:
                staging.unlink(name)
                return "size"
            entry.size, entry.digest, entry.staged = size, digest.hexdigest(), staging.abspath(name)
            return ""
        finally:
            os.close(fd)

    def remove(self, name: str) -> bool:
        """Remove one name (missing is fine; an empty directory too); False if it stays."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except OSError:
            try:  # a user-made directory: root removes it only when empty (follows nothing)
                os.rmdir(name, dir_fd=self.fd)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return True

    def publish_daily(self, uid: int, day: str, count: int) -> None:
        """Write ``.daily/<uid>`` (root's, 0644, atomically) for learn-enqueue's early refusal."""
        dfd = os.open(spool.DAILY_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=self.fd)
        try:
            tmp = f".{uid}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644, dir_fd=dfd)
            try:
                os.fchmod(fd, 0o644)  # whatever the umask: learn-enqueue reads it as the user
                os.write(fd, f"{day} {count}\n".encode())
            finally:
                os.close(fd)
            os.rename(tmp, str(uid), src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            os.close(dfd)
