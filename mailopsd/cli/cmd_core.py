"""Core commands: run, run-job, jobs, status, check-config."""

from __future__ import annotations

import argparse
from typing import Any

from mailopsd.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    add_json_flag,
    load,
    print_json,
    print_table,
)

PID_FILE = "mailopsd.pid"


def register(sub: Any) -> None:
    """Add the core commands to the subparsers."""
    p = sub.add_parser("run", help="run the daemon in the foreground (what systemd starts)",
                       description="Run the scheduler and the services (blocker, Sent fixer) "
                       "until SIGTERM. SIGHUP reloads the configuration; a bad new file is "
                       "refused and the old one stays in force.")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("run-job", help="run one job now, exactly as the scheduler would",
                       description="Run a job now through the same code the daemon uses. "
                       "Exits 75 if the job is already running, 1 if it fails.")
    p.add_argument("job", metavar="JOB", help="job id, e.g. learn-spam (see `mailopsd jobs`)")
    p.add_argument("--dry-run", action="store_true",
                   help="report what the job would do without changing anything")
    p.set_defaults(handler=cmd_run_job)

    p = sub.add_parser("jobs", help="list jobs: schedule, next run, last run and result",
                       description="Every job with its schedule, next run, and its last run's "
                       "start, result and duration (from the state database).")
    add_json_flag(p)
    p.set_defaults(handler=cmd_jobs)

    p = sub.add_parser("status", help="is the daemon running; running jobs; last failures",
                       description="Show whether the daemon runs, which jobs are running now, "
                       "and the last result of each job. Exits 3 if the daemon is not running, "
                       "1 if some enabled job's last run failed.")
    add_json_flag(p)
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("check-config", help="validate the configuration and the machine it names",
                       description="Read the configuration (the main file and its mailopsd.d/ "
                       "drop-ins) and report every mistake at once, each with its dotted key; "
                       "then check that the paths, users, programs and templates it names "
                       "exist (warnings). Exits 0 if valid, 2 if not (or, with --strict, if "
                       "there are warnings).")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings about the machine as errors (exit 2)")
    p.set_defaults(handler=cmd_check_config)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until stopped."""
    import os

    from mailopsd.core.config import config_path_from
    from mailopsd.core.locks import FileLock
    from mailopsd.daemon.main import Daemon

    cfg = load(args)
    os.makedirs(cfg.daemon.run_dir, mode=0o755, exist_ok=True)
    # a second daemon on the same state would double-ban and double-learn: refuse it
    lock = FileLock(os.path.join(cfg.daemon.run_dir, PID_FILE))
    lock.acquire()
    try:
        return Daemon(cfg, config_path_from(args.config)).run()
    finally:
        lock.release()


def cmd_run_job(args: argparse.Namespace) -> int:
    """Run one job now; exit 0 ok, 1 failed, 75 busy."""
    from mailopsd.core.state import StateDB
    from mailopsd.daemon.registry import job_function
    from mailopsd.daemon.runner import run_job

    cfg = load(args)
    job_function(args.job)  # unknown job -> clear error before anything runs
    outcome = run_job(args.job, cfg, StateDB(cfg.daemon.state_dir), trigger="run-job",
                      dry_run=args.dry_run)
    return EXIT_OK if outcome.result == "ok" else EXIT_JOB_FAILED


def _job_rows(cfg: Any) -> list[dict[str, Any]]:
    from datetime import datetime

    from mailopsd.core.schedule import parse_cron
    from mailopsd.core.state import StateDB
    from mailopsd.daemon.registry import JOBS

    state = StateDB(cfg.daemon.state_dir)
    now = datetime.now().astimezone()
    rows = []
    for job_id, (_module, summary, replaces) in JOBS.items():
        settings = cfg.jobs.get(job_id)
        nxt = parse_cron(settings.schedule).next_after(now) if settings.enabled else None
        last = state.last_run(job_id)
        rows.append({
            "job": job_id, "enabled": settings.enabled, "schedule": settings.schedule,
            "next_run": nxt.isoformat(timespec="minutes") if nxt else None,
            "last_run": datetime.fromtimestamp(last.started).astimezone().isoformat(
                timespec="seconds") if last else None,
            "last_result": last.result if last else None,
            "last_duration": round(last.duration, 3) if last and last.duration is not None
            else None,
            "last_error": last.error if last else None,
            "summary": summary, "replaces": replaces,
        })
    return rows


def cmd_jobs(args: argparse.Namespace) -> int:
    """Print the job table."""
    cfg = load(args, log=False)
    rows = _job_rows(cfg)
    if args.json:
        print_json(rows)
        return EXIT_OK
    print_table(("JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "RESULT", "DURATION"), [
        (r["job"], r["schedule"] if r["enabled"] else f"({r['schedule']}, disabled)",
         (r["next_run"] or "-").replace("T", " "), (r["last_run"] or "never").replace("T", " "),
         r["last_result"] or "-",
         f"{r['last_duration']:.1f}s" if r["last_duration"] is not None else "-")
        for r in rows])
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Daemon liveness, running jobs, last results."""
    import os

    from mailopsd.core.locks import FileLock, job_lock

    cfg = load(args, log=False)
    probe = FileLock(os.path.join(cfg.daemon.run_dir, PID_FILE))
    daemon_running = probe.held_elsewhere()
    pid = probe.holder() if daemon_running else None
    rows = _job_rows(cfg)
    for r in rows:
        r["running"] = job_lock(cfg.daemon.run_dir, r["job"]).held_elsewhere()
    failed = [r["job"] for r in rows if r["enabled"] and r["last_result"] == "failed"]
    data = {"daemon": {"running": daemon_running, "pid": pid}, "jobs": rows, "failed": failed}
    if args.json:
        print_json(data)
    else:
        print(f"daemon: {'running, pid ' + str(pid) if daemon_running else 'not running'}")
        print_table(("JOB", "RUNNING", "LAST RUN", "RESULT", "ERROR"), [
            (r["job"], "yes" if r["running"] else "no",
             (r["last_run"] or "never").replace("T", " "), r["last_result"] or "-",
             (r["last_error"] or "")[:60]) for r in rows])
    if not daemon_running:
        return EXIT_NOT_RUNNING
    return EXIT_JOB_FAILED if failed else EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config and the machine (ConfigError becomes exit 2 in main)."""
    from mailopsd.cli.cmd_config import check_config

    return check_config(args)
