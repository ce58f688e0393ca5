"""The daemon's status snapshot: ``<run_dir>/status.json``, rewritten every few seconds.

``mailopsd status`` runs in another process; it reads this file (atomically replaced, so never
half-written) for what only the daemon knows: each service's state (the blocker's followed file,
position, lag, active bans per rule, kernel check) and the jobs running now. A service that turns
degraded (following nothing, kernel check failing, a thread dead) logs ``service_degraded`` once
and mails ``notify.mail_to`` (at most once per ``notify.interval``); ``service_recovered`` when
it is well again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from datetime import datetime
from typing import Any

from mailopsd.core.logs import get_logger

STATUS_FILE = "status.json"
INTERVAL = 2.0
STALE_AFTER = 15.0  # status calls an older snapshot stale (the daemon is hung)


def iso(ts: float | None) -> str | None:
    """ISO 8601 local time with its offset."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def service_status(service: Any) -> dict[str, Any]:
    """A service's own ``status()``, or what can be said of any service (alive, log position)."""
    status = getattr(service, "status", None)
    if callable(status):
        out = dict(status())
    else:
        alive = bool(service.alive())
        out = {"alive": alive, "degraded": not alive,
               "problems": [] if alive else ["a thread of the service has stopped"]}
        follower = getattr(service, "follower", None)
        if follower is not None and hasattr(follower, "position"):
            pos = follower.position()
            out.update(file=getattr(follower, "path", None),
                       position=None if pos is None else pos[2])
    out.setdefault("alive", bool(service.alive()))
    return out


def write_atomic(path: str, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temp file and rename; raises OSError."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".status.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, default=str)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_snapshot(run_dir: str) -> dict[str, Any] | None:
    """The snapshot as written, or None if missing or unreadable."""
    try:
        with open(os.path.join(run_dir, STATUS_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StatusWriter:
    """A thread that writes the snapshot of a running Daemon every ``INTERVAL`` seconds."""

    def __init__(self, daemon: Any, interval: float = INTERVAL) -> None:
        self.daemon = daemon
        self.interval = interval
        self.path = os.path.join(daemon.config.daemon.run_dir, STATUS_FILE)
        self.log = get_logger("daemon")
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._degraded: dict[str, str] = {}
        self._suspect: dict[str, int] = {}  # consecutive degraded snapshots per service

    def start(self) -> None:
        """Write once now, then keep writing in the background."""
        self.write_once()
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop writing and remove the snapshot (status then says "not running")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def snapshot(self) -> dict[str, Any]:
        """Everything the file holds."""
        d = self.daemon
        services = {}
        for sid, service in list(dict(d.services.running).items()):
            try:
                services[sid] = service_status(service)
            except Exception as exc:  # a broken status must not hide the others
                services[sid] = {"alive": False, "degraded": True,
                                 "problems": [f"status failed: {exc!r}"[:300]]}
        with d._running_lock:
            running = sorted(d._running)
        return {"pid": os.getpid(), "written_at": iso(time.time()), "written": time.time(),
                "started_at": iso(self.started), "config": d.config_path,
                "running_jobs": running, "services": services}

    def write_once(self) -> dict[str, Any]:
        """Build and write one snapshot; returns it. Problems are logged, not raised."""
        data = self.snapshot()
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            self.log.error("status_write_failed", path=self.path, error=str(exc))
        self._watch_degraded(data["services"])
        return data

    def _watch_degraded(self, services: dict[str, dict[str, Any]]) -> None:
        from mailopsd.daemon.notify import send_failure_mail

        for sid, st in services.items():
            problems = "; ".join(st.get("problems") or []) or "degraded"
            if st.get("degraded"):
                # twice in a row: a moment's hiccup (a reload, a rotation) is not an alert
                seen = self._suspect.get(sid, 0) + 1
                self._suspect[sid] = seen
                if sid not in self._degraded and seen >= 2:
                    self._degraded[sid] = problems
                    self.log.error("service_degraded", service=sid, problems=problems)
                    send_failure_mail(self.daemon.config, self.daemon.state, f"service:{sid}",
                                      f"service {sid} degraded",
                                      [("service", sid), ("problem", problems),
                                       ("check", "mailopsd status")])
            else:
                self._suspect.pop(sid, None)
                if sid in self._degraded:
                    del self._degraded[sid]
                    self.log.info("service_recovered", service=sid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write_once()
            except Exception as exc:  # keep writing; a bug must show, not stop status
                self.log.error("status_write_failed", path=self.path, error=repr(exc))
