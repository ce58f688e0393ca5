"""Maildir names: message file names, their ``:2,FLAGS`` info suffix, new unique names, folders.

Pure string functions (plus the clock and host name for new names): no file is touched here.
Flags live in the name's info suffix ``:2,FLAGS`` in ASCII order (Dovecot keywords a-z after the
capitals); unknown flags are kept. Imports only the standard library (the as-user worker runs
with ``python -I -S``).
"""

from __future__ import annotations

import itertools
import os
import socket
import time

_counter = itertools.count()


def valid_message_name(name: str) -> bool:
    """True for a plausible message file name: not hidden, no slash or NUL."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\x00" not in name


def split_info(name: str) -> tuple[str, str | None]:
    """Split ``base:2,FLAGS`` into (base, flags); flags is None without a ``:2,`` suffix."""
    base, sep, info = name.partition(":")
    if not sep or not info.startswith("2,"):
        return base, None
    return base, info[2:]


def with_flags(name: str, add: str = "", remove: str = "") -> str:
    """The name with flags added/removed, in ASCII order; unknown flags are kept.

    A name with a non-``2,`` info suffix is returned unchanged (we do not understand it).
    """
    base, flags = split_info(name)
    if flags is None:
        if ":" in name:
            return name
        flags = ""
    kept = (set(flags) | set(add)) - set(remove)
    return f"{base}:2,{''.join(sorted(kept))}"


def unique_name(size: int | None = None) -> str:
    """A new Maildir base name ``<sec>.M<usec>P<pid>Q<n>.<host>[,S=<size>]``."""
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
    name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{host}"
    return f"{name},S={size}" if size is not None else name


def check_folder_name(name: str) -> None:
    """Raise ValueError unless ``name`` is one Maildir++ folder (``.Name``, spaces allowed)."""
    if (not name.startswith(".") or name in (".", "..") or "/" in name
            or any(ord(c) < 32 for c in name)):
        raise ValueError(f"{name!r} is not a Maildir++ folder name (like '.INBOX.Spam')")
