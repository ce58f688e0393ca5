"""Core commands: run, run-job, jobs, status, check-config."""

from __future__ import annotations

import argparse
from typing import Any

from mailopsd.cli.common import (
    EXIT_JOB_FAILED,
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
                   help="report what the job would do without changing anything (not "
                   "recorded: `jobs` and catch-up ignore it; never mails)")
    p.set_defaults(handler=cmd_run_job)

    p = sub.add_parser("jobs", help="list jobs: schedule, next run, last run and result",
                       description="Every job with its schedule, next run, and its last run's "
                       "start, result and duration (from the state database). With --history "
                       "JOB: that job's past runs with their counts (dry runs are not runs and "
                       "are not recorded).")
    p.add_argument("--history", metavar="JOB", help="past runs of one job, newest first")
    p.add_argument("--limit", type=int, default=50, help="with --history: at most this many "
                   "runs (default 50)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_jobs)

    p = sub.add_parser("status", help="daemon, blocker, Sent fixer and jobs: what runs, "
                       "what is wrong", description="Show whether the daemon runs; the "
                       "blocker's followed file, byte position and lag, lines read, active bans "
                       "per rule, addresses counting toward a ban, backend and last kernel "
                       "check; the Sent fixer; each job's last real run. Exits 0 when healthy, "
                       "1 when a service is degraded (following nothing, kernel check failing) "
                       "or an enabled job's last run failed, 3 when the daemon is not running.")
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
    """Print the job table, or one job's history."""
    cfg = load(args, log=False)
    if args.history:
        from mailopsd.cli.status_view import history
        from mailopsd.daemon.registry import job_function

        job_function(args.history)  # unknown job -> exit 2 naming the jobs
        return history(cfg, args.history, args.json, args.limit)
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
    """Daemon, services and jobs; exit 0 healthy, 1 degraded or failed, 3 not running."""
    from mailopsd.cli.status_view import collect, print_status

    cfg = load(args, log=False)
    data, code = collect(cfg, _job_rows(cfg))
    if args.json:
        print_json(data)
    else:
        print_status(data)
    return code


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config and the machine (ConfigError becomes exit 2 in main)."""
    from mailopsd.cli.cmd_config import check_config

    return check_config(args)
