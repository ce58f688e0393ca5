"""The blocker's part of ``mailopsd status``: what fail2ban-client status exim would show.

Built by the running daemon (``BlockerService.status``) and written every few seconds into the
status snapshot (mailopsd.daemon.status); every timestamp is ISO 8601 with its offset.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailopsd.blocker.service import BlockerService

SETTLE = 5.0  # a follower just started may not have opened the file yet: not "degraded"


def iso(ts: float | None) -> str | None:
    """ISO 8601 local time with its offset (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def _file(path: str, position: tuple[int, int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"file": path, "position": None, "size": None, "lag_bytes": None,
                           "following": position is not None}
    try:
        st = os.stat(path)
    except OSError as exc:
        out["file_error"] = exc.strerror or str(exc)
        st = None
    if position is not None:
        out["position"] = position[2]
        if st is not None and (st.st_dev, st.st_ino) == position[:2]:
            out["size"] = st.st_size
            out["lag_bytes"] = max(0, st.st_size - position[2])
    elif st is not None:
        out["size"] = st.st_size
    return out


def blocker_status(svc: BlockerService) -> dict[str, Any]:
    """The blocker's status dict; never raises for a missing file or a busy database."""
    from mailopsd.core.errors import MailopsError

    follower = svc._follower
    try:
        position = follower.position() if follower is not None else None
    except Exception:  # a follower in trouble must not break status
        position = None
    out = _file(svc.config.blocker.mainlog, position)
    with svc._lock:
        tracked = svc.policy.tracked() if hasattr(svc.policy, "tracked") else None
        matches = {k: v for k, v in dict(getattr(svc.policy, "matches", {})).items() if v}
        in_view = len(svc._banned)
        failed = sorted(svc._failed)
    per_rule: dict[str, int] = {}
    try:
        per_rule = svc.store.count_by_rule()
    except MailopsError as exc:
        out["state_error"] = str(exc)
    check = dict(svc.kernel_check)
    check["at"] = iso(check.get("at"))
    problems = []
    settling = svc.started_at is not None and time.monotonic() - svc.started_at < SETTLE
    if not out["following"] and not settling:
        problems.append(f"following nothing: {out['file']} "
                        f"({out.get('file_error', 'not opened yet')})")
    if check.get("ok") is False:
        problems.append(f"kernel check failing: {check.get('error')}")
    if failed:
        problems.append(f"{len(failed)} bans not in the kernel (retrying)")
    if not svc.alive():
        problems.append("a blocker thread has stopped")
    out.update({
        "lines_read": svc.lines_read,
        "active_bans": per_rule,
        "active_total": sum(per_rule.values()),
        "bans_in_kernel_view": in_view,
        "failed_bans": failed[:20],
        "counting": tracked,
        "matches": matches,  # per rule since the daemon started (fail2ban's "Total failed")
        "backend": svc.backend.name,
        "kernel_check": check,
        "degraded": bool(problems),
        "problems": problems,
    })
    return out
