"""The daemon: APScheduler for jobs, long-running services, signals and sd_notify.

Signals are only flagged by their handlers; the main loop acts on them, so reloads and stops
never run inside a signal handler. The main loop also pings systemd's watchdog, and only while
the scheduler thread and every service are alive.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from mailopsd import sdnotify
from mailopsd.config import load_config
from mailopsd.config.schema import Config
from mailopsd.errors import ConfigError, JobBusyError, MailopsError
from mailopsd.logs import get_logger
from mailopsd.registry import SERVICES, job_ids, service_factory
from mailopsd.runner import run_job
from mailopsd.schedule import parse_cron
from mailopsd.state import StateDB


class Service(Protocol):
    """A long-running part of the daemon (the blocker, the Sent fixer)."""

    name: str

    def start(self) -> None:
        """Start working (threads, watches); raises MailopsError if it cannot."""

    def stop(self, timeout: float) -> None:
        """Stop within ``timeout`` seconds, saving what must survive a restart."""

    def alive(self) -> bool:
        """Whether all of its threads are still working (feeds the systemd watchdog)."""


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


class Daemon:
    """``mailopsd run``: schedule jobs, run services, obey signals, talk to systemd."""

    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self.log = get_logger("daemon")
        self.state = StateDB(config.daemon.state_dir)
        self.scheduler: Any = None
        self.services: dict[str, Service] = {}
        self._running: dict[str, threading.Event] = {}
        self._running_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._reload = False

    # -- scheduling ---------------------------------------------------------------------------
    def _tz(self) -> Any:
        if self.config.daemon.timezone:
            from zoneinfo import ZoneInfo

            return ZoneInfo(self.config.daemon.timezone)
        return datetime.now().astimezone().tzinfo

    def _make_scheduler(self) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        d = self.config.daemon
        return BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={
                # the 1 s default would silently skip a daily job after a stall or a busy start
                "misfire_grace_time": int(d.misfire_grace_time),
                "coalesce": True,       # many missed fires run once, not in a burst
                "max_instances": 1,     # the job lock would refuse a second one anyway
            },
            timezone=self._tz())

    def _schedule_jobs(self) -> None:
        """(Re)create every enabled job's cron entry and any catch-up run."""
        for job in self.scheduler.get_jobs():
            job.remove()
        tz = self._tz()
        now = datetime.now(tz)
        for job_id in job_ids():
            settings = self.config.jobs.get(job_id)
            if not settings.enabled:
                continue
            spec = parse_cron(settings.schedule)
            self.scheduler.add_job(self._run_scheduled, spec.trigger(tz, settings.random_delay),
                                   id=job_id, name=job_id, args=(job_id, "schedule"),
                                   replace_existing=True)
            if settings.catch_up:
                last = self.state.last_run(job_id, "ok") or self.state.last_run(job_id)
                if catch_up_due(settings.schedule, last.started if last else None, now):
                    delay = self.config.daemon.catch_up_delay + random.uniform(
                        0, settings.random_delay)
                    when = now + timedelta(seconds=delay)
                    self.scheduler.add_job(self._run_scheduled, "date", run_date=when,
                                           id=f"{job_id}@catch-up", name=f"{job_id} (catch-up)",
                                           args=(job_id, "catch-up"), replace_existing=True)
                    self.log.info("job_catch_up_scheduled", job=job_id, at=when.isoformat(),
                                  last_run=datetime.fromtimestamp(last.started, tz).isoformat()
                                  if last else None)

    def _run_scheduled(self, job_id: str, trigger: str) -> None:
        cancel = threading.Event()
        with self._running_lock:
            if self._stop:
                return
            self._running[job_id] = cancel
        try:
            run_job(job_id, self.config, self.state, trigger=trigger, cancel=cancel)
        except JobBusyError as exc:
            self.log.warning("job_skipped_busy", job=job_id, error=str(exc))
        except MailopsError as exc:
            self.log.error("job_not_started", job=job_id, error=str(exc))
        finally:
            with self._running_lock:
                self._running.pop(job_id, None)
            self._update_status()

    # -- services -----------------------------------------------------------------------------
    def _start_services(self) -> None:
        for service_id in SERVICES:
            service = service_factory(service_id)(self.config, self.state)
            if service is None:
                continue
            service.start()
            self.services[service_id] = service
            self.log.info("service_started", service=service_id)

    def _stop_services(self, timeout: float) -> None:
        for service_id, service in list(self.services.items()):
            try:
                service.stop(timeout)
                self.log.info("service_stopped", service=service_id)
            except Exception as exc:  # keep stopping the others
                self.log.error("service_stop_failed", service=service_id, error=str(exc))
        self.services.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    def alive(self) -> bool:
        """Scheduler thread and every service alive: only then is WATCHDOG=1 sent."""
        thread = getattr(self.scheduler, "_thread", None)
        if self.scheduler is None or not self.scheduler.running:
            return False
        if thread is not None and not thread.is_alive():
            return False
        return all(s.alive() for s in self.services.values())

    def status_line(self) -> str:
        """The one-line STATUS= for systemctl status."""
        jobs = [j for j in self.scheduler.get_jobs() if "@" not in j.id] if self.scheduler else []
        nxt = min((j for j in jobs if j.next_run_time), key=lambda j: j.next_run_time,
                  default=None)
        with self._running_lock:
            running = sorted(self._running)
        parts = [f"{len(jobs)} jobs scheduled"]
        if running:
            parts.append("running: " + ",".join(running))
        if nxt is not None:
            parts.append(f"next: {nxt.id} at {nxt.next_run_time:%Y-%m-%d %H:%M}")
        if self.services:
            parts.append("services: " + ",".join(sorted(self.services)))
        return "; ".join(parts)

    def _update_status(self) -> None:
        sdnotify.notify(f"STATUS={self.status_line()}")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self._wake.set()

    def reload(self) -> bool:
        """Re-read the config; a bad one is refused and the old one stays. Returns success."""
        sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                        "STATUS=reloading configuration")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.log.error("config_reload_failed", path=self.config_path,
                           problems=[str(p) for p in exc.problems],
                           message="keeping the configuration in force")
            sdnotify.notify("READY=1")
            self._update_status()
            return False
        old = self.config
        self.config = new
        from mailopsd.cli.common import setup_logging

        if new.logging != old.logging:
            import argparse

            setup_logging(new, argparse.Namespace(log_level=None))
        self._schedule_jobs()
        if (new.blocker, new.sent, new.daemon) != (old.blocker, old.sent, old.daemon):
            self._stop_services(new.daemon.stop_timeout)
            self._start_services()
        self.log.info("config_reloaded", path=self.config_path)
        sdnotify.notify("READY=1")
        self._update_status()
        return True

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        interrupted = self.state.interrupt_stale_runs()
        if interrupted:
            self.log.warning("job_runs_interrupted", count=interrupted)
        self.scheduler = self._make_scheduler()
        self._schedule_jobs()
        self.scheduler.start()
        self._start_services()
        self.log.info("daemon_started", pid=os.getpid(), config=self.config_path,
                      jobs=[j.id for j in self.scheduler.get_jobs()],
                      services=sorted(self.services))
        sdnotify.notify("READY=1", f"STATUS={self.status_line()}")
        interval = (sdnotify.watchdog_interval() or self.config.daemon.watchdog_interval or 30.0)
        while not self._stop:
            if self.alive():
                sdnotify.notify("WATCHDOG=1")
            else:
                self.log.error("daemon_unhealthy", message="scheduler or a service died; "
                               "withholding the watchdog ping")
            self._wake.wait(interval)
            self._wake.clear()
            if self._reload and not self._stop:
                self._reload = False
                self.reload()
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop within daemon.stop_timeout: cancel running jobs, stop services."""
        sdnotify.notify("STOPPING=1", "STATUS=stopping")
        self.log.info("daemon_stopping")
        deadline = time.monotonic() + self.config.daemon.stop_timeout
        with self._running_lock:
            running = dict(self._running)
        for cancel in running.values():
            cancel.set()
        self.scheduler.shutdown(wait=False)
        while time.monotonic() < deadline:
            with self._running_lock:
                if not self._running:
                    break
            time.sleep(0.05)
        with self._running_lock:
            left = sorted(self._running)
        if left:
            # their threads die with the process: record them as cancelled, not "running"
            marked = self.state.cancel_own_runs("stopped by SIGTERM before the job ended")
            self.log.error("jobs_still_running_at_stop", jobs=left, marked_cancelled=marked)
        self._stop_services(max(1.0, deadline - time.monotonic()))
        self.log.info("daemon_stopped")
        return 0
