"""The spool's layout and names, shared by ``learn-enqueue`` (as the user) and the daemon (root).

spool_dir is root-owned, mode 1733 (sticky, write+search for all, no listing): any user may
create files in it, nobody but root may list it, and the sticky bit keeps a user from renaming
or removing another user's files. Each entry is one regular file, mode 0600, owned by the user
who submitted it; the kernel's record of that owner is the only thing that says whose it is.

Names (every part chosen by learn-enqueue; the daemon trusts none of it beyond the class word):
- ``spam.<time_ns>.<pid>.<random>`` / ``ham.<...>``: a message to learn;
- ``refused.<reason>.<time_ns>.<pid>.<random>``: an empty marker of a refusal, for the counts;
- ``.tmp.<...>``: being written (renamed into place when complete; stale ones are removed);
- ``.daily/<uid>``: root-written ``<day> <count>`` of what the daemon learned for that uid today,
  which learn-enqueue reads to refuse early (it can only refuse, never grant).
Imports only the standard library: learn-enqueue starts once per IMAP move.
"""

from __future__ import annotations

import os
import time

SPOOL_MODE = 0o1733
DAILY_DIR = ".daily"
TMP_PREFIX = ".tmp."
CLASSES = ("spam", "ham")
REFUSED = "refused"
REASONS = ("size", "daily_limit")


def today(now: float | None = None) -> str:
    """The local date, YYYY-MM-DD: the day a daily limit counts in."""
    return time.strftime("%Y-%m-%d", time.localtime(now))


def new_name(kind: str) -> str:
    """A fresh entry name: ``<kind>.<time_ns>.<pid>.<random>`` (kind: spam, ham, refused.X)."""
    return f"{kind}.{time.time_ns()}.{os.getpid()}.{os.urandom(6).hex()}"


def parse_name(name: str) -> tuple[str, str, int] | None:
    """(kind, class-or-reason, time_ns) of an entry name, or None if it is not one of ours.

    kind is "learn" (then the second item is spam|ham) or "refused" (then it is the reason).
    """
    parts = name.split(".")
    try:
        if len(parts) == 4 and parts[0] in CLASSES:
            return "learn", parts[0], int(parts[1])
        if len(parts) == 5 and parts[0] == REFUSED and parts[1] in REASONS:
            return "refused", parts[1], int(parts[2])
    except ValueError:
        return None
    return None


def daily_path(spool_dir: str, uid: int) -> str:
    """Where the daemon publishes ``uid``'s learned count for today."""
    return os.path.join(spool_dir, DAILY_DIR, str(uid))


def read_daily(spool_dir: str, uid: int, day: str) -> int:
    """The count the daemon published for ``uid`` on ``day`` (0 if none, stale or unreadable)."""
    try:
        with open(daily_path(spool_dir, uid), "rb") as f:
            text = f.read(64).decode("ascii", "replace").split()
    except OSError:
        return 0
    if len(text) == 2 and text[0] == day and text[1].isdigit():
        return int(text[1])
    return 0
