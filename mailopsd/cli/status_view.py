"""``mailopsd status`` and ``mailopsd jobs --history``: what runs, what it did, what is wrong.

status reads the daemon's snapshot (``<run_dir>/status.json``, rewritten every few seconds by
the daemon) for the services, and the state database for the jobs' last real runs. Exit codes:
0 healthy, 1 a service is degraded (or the snapshot is stale) or an enabled job's last run
failed, 3 the daemon is not running. Every timestamp is ISO 8601 with its offset.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

from mailopsd.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    print_json,
    print_table,
)

PID_FILE = "mailopsd.pid"


def iso(ts: float | None) -> str | None:
    """ISO 8601 local time with its offset."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def _saved_position(cfg: Any) -> int | None:
    """The blocker's saved log position (used when the daemon is not running)."""
    from mailopsd.core.state import StateDB

    try:
        conn = StateDB(cfg.daemon.state_dir).connect()
    except Exception:
        return None
    try:
        row = conn.execute("SELECT offset FROM log_positions WHERE name = ?",
                           (f"blocker:{cfg.blocker.mainlog}",)).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else None


def _offline_blocker(cfg: Any) -> dict[str, Any]:
    """What the state database says about the blocker while no daemon runs."""
    from mailopsd.blocker.store import BanStore
    from mailopsd.core.state import StateDB

    per_rule = BanStore(StateDB(cfg.daemon.state_dir)).count_by_rule()
    return {"enabled": True, "running": False, "file": cfg.blocker.mainlog,
            "position": _saved_position(cfg), "active_bans": per_rule,
            "active_total": sum(per_rule.values()), "backend": cfg.blocker.firewall.backend,
            "kernel_check": None, "degraded": False, "problems": []}


def collect(cfg: Any, job_rows: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The status document and its exit code."""
    from mailopsd.core.locks import FileLock, job_lock
    from mailopsd.daemon.status import STALE_AFTER, read_snapshot

    probe = FileLock(os.path.join(cfg.daemon.run_dir, PID_FILE))
    running = probe.held_elsewhere()
    pid = probe.holder() if running else None
    snap = read_snapshot(cfg.daemon.run_dir) if running else None
    problems: list[str] = []
    services: dict[str, Any] = {}
    age = None
    if snap is not None:
        age = round(time.time() - float(snap.get("written", 0)), 1)
        services = dict(snap.get("services") or {})
        if age > STALE_AFTER:
            problems.append(f"the daemon's status is {age:.0f}s old (hung?)")
    elif running:
        problems.append("the daemon runs but wrote no status snapshot yet")
    blocker: dict[str, Any]
    if not cfg.blocker.enabled:
        blocker = {"enabled": False}
    elif "blocker" in services:
        blocker = {"enabled": True, "running": True, **services["blocker"]}
    else:
        blocker = _offline_blocker(cfg)
        if running and snap is not None:
            blocker["problems"] = ["enabled but not running in the daemon"]
            blocker["degraded"] = True
    sent: dict[str, Any]
    if not cfg.sent.enabled:
        sent = {"enabled": False}
    else:
        sent = {"enabled": True, "running": "sent-fixer" in services,
                **services.get("sent-fixer", {})}
    for name, sec in (("blocker", blocker), ("sent-fixer", sent)):
        if running and sec.get("degraded"):
            problems += [f"{name}: {p}" for p in sec.get("problems") or ["degraded"]]
    for r in job_rows:
        r["running"] = job_lock(cfg.daemon.run_dir, r["job"]).held_elsewhere()
    failed = [r["job"] for r in job_rows if r["enabled"] and r["last_result"] == "failed"]
    problems += [f"job {j}: last run failed" for j in failed]
    data = {
        "daemon": {"running": running, "pid": pid,
                   "started_at": snap.get("started_at") if snap else None,
                   "status_at": snap.get("written_at") if snap else None,
                   "status_age": age,
                   "running_jobs": snap.get("running_jobs", []) if snap else []},
        "blocker": blocker, "sent_fixer": sent, "jobs": job_rows, "failed": failed,
        "problems": problems, "healthy": running and not problems,
    }
    if not running:
        return data, EXIT_NOT_RUNNING
    return data, EXIT_JOB_FAILED if problems else EXIT_OK


def _blocker_lines(b: dict[str, Any]) -> list[str]:
    if not b.get("enabled"):
        return ["blocker: disabled"]
    per_rule = ", ".join(f"{k} {v}" for k, v in sorted(b.get("active_bans", {}).items()))
    total = b.get("active_total", 0)
    if not b.get("running"):
        return [f"blocker: not running; {b['file']} saved at byte {b.get('position')}",
                f"  active bans: {total}" + (f" ({per_rule})" if per_rule else "")]
    where = (f"following {b['file']} at byte {b.get('position')}"
             if b.get("following") else f"NOT following {b['file']}")
    lag = b.get("lag_bytes")
    lines = [f"blocker: {where}" + (f", {lag} bytes behind" if lag else ", up to date"
                                     if lag == 0 else "")
             + f", {b.get('lines_read', 0)} lines read since start",
             f"  active bans: {total}" + (f" ({per_rule})" if per_rule else "")
             + f"; addresses counting toward a ban: {b.get('counting')}"
             + f"; backend {b.get('backend')}"]
    check = b.get("kernel_check") or {}
    if check.get("at"):
        state = "ok" if check.get("ok") else f"FAILING: {check.get('error')}"
        lines.append(f"  kernel check: {state} at {check['at']}")
    else:
        lines.append("  kernel check: not yet (every blocker.firewall.verify_interval)")
    return lines


def print_status(data: dict[str, Any]) -> None:
    """The plain-text status."""
    d = data["daemon"]
    print(f"daemon: running, pid {d['pid']}" + (f", since {d['started_at']}"
                                                 if d.get("started_at") else "")
          if d["running"] else "daemon: not running")
    for line in _blocker_lines(data["blocker"]):
        print(line)
    s = data["sent_fixer"]
    if not s.get("enabled"):
        print("sent-fixer: disabled")
    else:
        state = ("degraded" if s.get("degraded") else "running") if s.get("running") \
            else "not running"
        print(f"sent-fixer: {state}" + (f", {s.get('file')} at byte {s.get('position')}"
                                        if s.get("file") else ""))
    print()
    print_table(("JOB", "RUNNING", "LAST RUN", "RESULT", "ERROR"), [
        (r["job"], "yes" if r["running"] else "no",
         (r["last_run"] or "never").replace("T", " "), r["last_result"] or "-",
         (r["last_error"] or "")[:60]) for r in data["jobs"]])
    if data["problems"]:
        print("\nproblems:")
        for p in data["problems"]:
            print(f"  - {p}")


def _counts_text(counts: dict[str, Any]) -> str:
    parts = []
    for k, v in counts.items():
        if isinstance(v, dict):
            v = json.dumps(v, separators=(",", ":"), sort_keys=True)
        parts.append(f"{k}={v}")
    return " ".join(parts)


def history(cfg: Any, job: str, as_json: bool, limit: int) -> int:
    """Print the past real runs of ``job``, newest first, with their counts."""
    from mailopsd.core.state import StateDB

    runs = StateDB(cfg.daemon.state_dir).history(job, limit=limit)
    rows: list[dict[str, Any]] = [
        {"id": r.id, "job": r.job, "trigger": r.trigger, "started": iso(r.started),
             "finished": iso(r.finished), "result": r.result,
             "duration": None if r.duration is None else round(r.duration, 3),
             "counts": dict(r.counts), "error": r.error}
            for r in runs if not r.counts.get("dry_run")]
    if as_json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"{job}: no runs recorded")
        return EXIT_OK
    print_table(("STARTED", "TRIGGER", "RESULT", "DURATION", "COUNTS / ERROR"), [
        ((r["started"] or "").replace("T", " "), r["trigger"], r["result"],
         "-" if r["duration"] is None else f"{r['duration']:.1f}s",
         (r["error"] + "; " if r["error"] else "") + _counts_text(r["counts"]))
        for r in rows])
    return EXIT_OK
