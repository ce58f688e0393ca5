"""A private, per-run directory of file copies that one less-privileged program reads.

learn-spam uses it to hand message copies to sa-learn running as the Bayes database owner,
which can read neither the users' 0600 files nor (safely) their paths. Root creates the
directory with mkdtemp (0700, unpredictable name), makes it 0711 (the reader may open names it
is given, nobody may list it or create anything in it), and writes every file itself with
``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to the directory's descriptor, mode 0400, owned by the
reader. No user controls any path involved, so no symlink or hard-link trick applies. ``remove``
deletes everything; ``remove_leftovers`` clears what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailopsd.core.users import Account

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Staging:
    """One run's staging directory under ``base`` (which must be reachable by the reader)."""

    def __init__(self, base: str, prefix: str, reader: Account) -> None:
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.fchmod(self.fd, 0o711)
        self.reader = reader
        self._seq = itertools.count(1)

    def unreachable_by(self, account: Account) -> str | None:
        """The first directory on the way to ``path`` that ``account`` cannot traverse (by
        mode bits; no ACLs), or None when it can reach the files."""
        path = self.path
        while True:
            st = os.stat(path)
            bit = (0o100 if st.st_uid == account.uid else
                   0o010 if st.st_gid == account.gid else 0o001)
            if not st.st_mode & bit:
                return path
            if path == "/":
                return None
            path = os.path.dirname(path)

    def create(self, stem: str = "m") -> tuple[str, int]:
        """A new empty file for the reader: (name, write fd). Raises OSError."""
        name = f"{stem}{next(self._seq):07d}"
        fd = os.open(name, _O_NEW, 0o400, dir_fd=self.fd)
        try:
            os.fchown(fd, self.reader.uid, self.reader.gid)
        except BaseException:
            os.close(fd)
            self.unlink(name)
            raise
        return name, fd

    @staticmethod
    def write(fd: int, data: bytes) -> None:
        """Write all of ``data`` to fd. Raises OSError (e.g. ENOSPC)."""
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def write_file(self, stem: str, data: bytes) -> str:
        """A complete new file; returns its absolute path."""
        name, fd = self.create(stem)
        try:
            self.write(fd, data)
        finally:
            os.close(fd)
        return self.abspath(name)

    def abspath(self, name: str) -> str:
        """The path the reader uses for ``name``."""
        return os.path.join(self.path, name)

    def unlink(self, name: str) -> None:
        """Remove one file (missing is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        shutil.rmtree(self.path, ignore_errors=True)


def remove_leftovers(base: str, prefix: str) -> list[str]:
    """Remove root-owned ``prefix*`` directories in ``base`` left by a killed run.

    Call it only while holding the job's lock. Directories of other owners are not ours (a
    user can create names in a shared /var/tmp) and are left alone. Returns what was removed.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_dir(follow_symlinks=False) and st.st_uid == 0:
            shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: follows no symlink
            removed.append(entry.path)
    return removed
