"""``mailopsd learn-queue``: what waits in the spool, per user (read-only; needs root)."""

from __future__ import annotations

import os
import stat
import time
from typing import Any

from mailopsd.core.errors import MailopsError
from mailopsd.core.state import StateDB
from mailopsd.livelearn import spool, store
from mailopsd.livelearn.batch import user_name


def queue_status(spool_dir: str, state: StateDB, now: float | None = None) -> dict[str, Any]:
    """{"spool_dir", "pending", "users": {name: {uid, pending, spam, ham,
    oldest_age_seconds, refused}}}; refused is today's count (recorded plus markers not yet
    counted by the daemon). Raises MailopsError when the spool cannot be listed."""
    at = time.time() if now is None else now
    try:
        fd = os.open(spool_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise MailopsError(f"cannot open live-learn.spool_dir {spool_dir}: {exc.strerror}"
                           " (missing until the daemon's live-learn service starts; "
                           "listing it needs root)") from exc
    users: dict[int, dict[str, Any]] = {}

    def user(uid: int) -> dict[str, Any]:
        return users.setdefault(uid, {"uid": uid, "pending": 0, "spam": 0, "ham": 0,
                                      "oldest_age_seconds": None, "refused": 0})

    day = spool.today(at)
    try:
        for name in os.listdir(fd):
            parsed = spool.parse_name(name)
            if parsed is None:
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            u = user(st.st_uid)
            if parsed[0] == "refused":
                u["refused"] += 1
                continue
            u["pending"] += 1
            u[parsed[1]] += 1
            age = round(max(0.0, at - min(st.st_mtime, parsed[2] / 1e9)), 3)
            if u["oldest_age_seconds"] is None or age > u["oldest_age_seconds"]:
                u["oldest_age_seconds"] = age
    finally:
        os.close(fd)
    conn = state.connect()
    try:
        for uid, n in store.refused_on(conn, day).items():
            user(uid)["refused"] += n
    finally:
        conn.close()
    return {"spool_dir": spool_dir, "day": day,
            "pending": sum(u["pending"] for u in users.values()),
            "users": {user_name(uid): u for uid, u in sorted(users.items())}}
