"""Adds and removes lines of /etc/exim4/trusted_configs safely while other tests do the same.

Debian's exim4 keeps root privilege for delivery with ``-C FILE`` only when FILE's absolute path
is listed there (and FILE is root-owned, not group/world writable). Every change takes an
exclusive lock, rewrites the file atomically (root:root 0644, which Exim requires of the list
itself) and never touches lines other than the one it was asked about.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

TRUSTED_CONFIGS = Path("/etc/exim4/trusted_configs")
# A lock of our own: the list is replaced by rename, so locking the list itself would not hold.
LOCK_PATH = Path("/run/lock/mailopsd-tests-trusted_configs.lock")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, "".join(line + "\n" for line in lines).encode())
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def add_trusted_config(config: Path, path: Path = TRUSTED_CONFIGS) -> None:
    """Append ``config``'s absolute path to the list (creating the list if missing)."""
    line = str(config)
    if not config.is_absolute():
        raise ValueError(f"trusted config path must be absolute: {line}")
    with _locked():
        lines = _read(path)
        if line not in lines:
            _write(path, [*lines, line])


def remove_trusted_config(config: Path, path: Path = TRUSTED_CONFIGS) -> None:
    """Remove exactly the line naming ``config``; every other line stays as it was."""
    line = str(config)
    with _locked():
        lines = _read(path)
        if line in lines:
            _write(path, [x for x in lines if x != line])


def is_trusted(config: Path, path: Path = TRUSTED_CONFIGS) -> bool:
    """True if ``config``'s path is a line of the list."""
    return str(config) in _read(path)
