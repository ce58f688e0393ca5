"""Scheduling jobs: APScheduler 3 set-up, crontab entries, and Persistent=true style catch-up.

A job whose last successful run is older than its last scheduled time runs ``catch_up_delay``
after start (like systemd timers' ``Persistent=true``); a job that never ran waits for its
schedule. Each entry calls back into the daemon, which runs the job through the runner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.schedule import parse_cron
from mailopsd.core.state import StateDB
from mailopsd.daemon.registry import job_ids


def catch_up_due(cron: str, last_reference: float | None, now: datetime) -> bool:
    """Persistent=true semantics: True if a scheduled time passed since the last run.

    ``last_reference`` is the start of the last successful run (or of the last attempt if the job
    never succeeded); a job that never ran is not caught up: it waits for its schedule.
    """
    if last_reference is None:
        return False
    last = datetime.fromtimestamp(last_reference, tz=now.tzinfo)
    nxt = parse_cron(cron).next_after(last)
    return nxt is not None and nxt <= now


def timezone_of(config: Config) -> Any:
    """The scheduler's time zone: ``daemon.timezone``, else the host's."""
    if config.daemon.timezone:
        from zoneinfo import ZoneInfo

        return ZoneInfo(config.daemon.timezone)
    return datetime.now().astimezone().tzinfo


def make_scheduler(config: Config) -> Any:
    """A BackgroundScheduler with explicit misfire, coalescing and instance settings."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    d = config.daemon
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={
            # the 1 s default would silently skip a daily job after a stall or a busy start
            "misfire_grace_time": int(d.misfire_grace_time),
            "coalesce": True,       # many missed fires run once, not in a burst
            "max_instances": 1,     # the job lock would refuse a second one anyway
        },
        timezone=timezone_of(config))


def schedule_jobs(scheduler: Any, config: Config, state: StateDB,
                  run: Callable[[str, str], None], log: Any) -> None:
    """(Re)create every enabled job's cron entry and any catch-up run; ``run(job, trigger)``."""
    for job in scheduler.get_jobs():
        job.remove()
    tz = timezone_of(config)
    now = datetime.now(tz)
    for job_id in job_ids():
        settings = config.jobs.get(job_id)
        if not settings.enabled:
            continue
        spec = parse_cron(settings.schedule)
        scheduler.add_job(run, spec.trigger(tz, settings.random_delay),
                          id=job_id, name=job_id, args=(job_id, "schedule"),
                          replace_existing=True)
        if not settings.catch_up:
            continue
        last = state.last_run(job_id, "ok") or state.last_run(job_id)
        if catch_up_due(settings.schedule, last.started if last else None, now):
            delay = config.daemon.catch_up_delay + random.uniform(0, settings.random_delay)
            when = now + timedelta(seconds=delay)
            scheduler.add_job(run, "date", run_date=when,
                              id=f"{job_id}@catch-up", name=f"{job_id} (catch-up)",
                              args=(job_id, "catch-up"), replace_existing=True)
            log.info("job_catch_up_scheduled", job=job_id, at=when.isoformat(),
                     last_run=datetime.fromtimestamp(last.started, tz).isoformat()
                     if last else None)
