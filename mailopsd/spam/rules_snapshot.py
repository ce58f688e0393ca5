"""Snapshot of SpamAssassin's versioned rules directory, put back when an update breaks it.

The trap (reference/spamassassin.md): on a server that never completed an update, a failed
sa-update leaves an empty ``<update_dir>/4.000001/updates_spamassassin_org/``; SpamAssassin then
finds no rules and spamd will not start. So before sa-update runs we copy the version directory
(or note that it was absent), and afterwards put it back exactly if the run left it changed and
unusable.

The copying, renaming and removing happen in the rules owner's own directory, so they run AS
the rules owner (a tiny stdlib-only Python child): a root process following a symlink the owner
planted there could copy or delete files anywhere.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from mailopsd.core.users import Account

# Runs as the rules owner with `python3 -I -S -c`; argv: op, target, snapshot.
_HELPER = r"""
import os, shutil, sys
op, target, snap = sys.argv[1:4]
broken = target + ".mailopsd-broken"
def rm(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
if op == "take":
    rm(snap)
    try:
        shutil.copytree(target, snap, symlinks=True)
    except BaseException:
        rm(snap)  # a half copy (the disk full) must neither stay nor pass for a snapshot
        raise
elif op == "restore":
    rm(broken)
    if os.path.lexists(target):
        os.rename(target, broken)
    if snap != "-":
        os.rename(snap, target)
    rm(broken)
elif op == "discard":
    rm(snap)
elif op == "publish":  # chmod -R go-w,go+rX: sa-compile ignores the umask
    for dirpath, dirnames, filenames in os.walk(target):
        for name in [""] + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                mode = (st.st_mode & 0o7777 & ~0o022) | 0o044
                if name == "" or st.st_mode & 0o111:
                    mode |= 0o011
                os.chmod(path, mode)
else:
    sys.exit("unknown op " + op)
"""

Fingerprint = dict[str, tuple[int, int, int]]


def fingerprint(path: str) -> Fingerprint | None:
    """Every entry under ``path`` (relative name -> type+mode, size, mtime); None if absent.

    Uses lstat only and never follows a symlink, so it is safe to run as root anywhere.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return None
    result: Fingerprint = {".": (top.st_mode, top.st_size, top.st_mtime_ns)}
    if not stat.S_ISDIR(top.st_mode):
        return result
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            result[os.path.relpath(full, path)] = (st.st_mode, size, st.st_mtime_ns)
    return result


@dataclass
class RulesSnapshot:
    """A copy of one rules directory beside it, made and restored as ``owner``."""

    python: str
    target: str
    owner: Account | None
    timeout: float = 120.0
    before: Fingerprint | None = None
    taken: bool = False
    _snap: str = field(default="", init=False)

    def __post_init__(self) -> None:
        parent, name = os.path.split(os.path.normpath(self.target))
        self._snap = os.path.join(parent, f".{name}.mailopsd-snapshot")

    @property
    def path(self) -> str:
        """Where the copy lives while the update runs."""
        return self._snap

    def take(self) -> None:
        """Record the directory's state and copy it (nothing to copy if it is absent).

        Raises ProcessError if the copy fails (then sa-update must not run).
        """
        self.before = fingerprint(self.target)
        if self.before is not None:
            self._helper("take", self._snap)
        self.taken = True

    def changed(self) -> bool:
        """Whether the directory differs from when the snapshot was taken."""
        return fingerprint(self.target) != self.before

    def restore(self) -> None:
        """Put the directory back as it was (remove it if it did not exist). Raises ProcessError."""
        if not self.taken:
            return
        self._helper("restore", self._snap if self.before is not None else "-")
        self.taken = False

    def discard(self) -> None:
        """Delete the copy (after a good update, or once restored). Raises ProcessError."""
        if self.taken and self.before is not None:
            self._helper("discard", self._snap)
        self.taken = False

    def _helper(self, op: str, snap: str) -> None:
        run_helper(self.python, op, self.target, snap, self.owner, self.timeout)


def run_helper(python: str, op: str, target: str, snap: str, owner: Account | None,
               timeout: float) -> None:
    """Run one helper operation as ``owner``. Raises ProcessError."""
    from mailopsd.core.process import run

    # no cancel: a half-done restore is worse than a late one
    run((python, "-I", "-S", "-c", _HELPER, op, target, snap), timeout=timeout, account=owner,
        umask=0o022)


def publish_tree(python: str, path: str, owner: Account | None, timeout: float = 120) -> None:
    """Make a tree readable by all and writable only by its owner, as the owner.

    spamd's per-user children must read sa-compile's output. Raises ProcessError.
    """
    run_helper(python, "publish", path, "-", owner, timeout)
