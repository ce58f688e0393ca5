"""The daemon: APScheduler for jobs, long-running services, signals and sd_notify.

Signals are only flagged by their handlers; the main loop acts on them, so reloads and stops
never run inside a signal handler. The main loop also pings systemd's watchdog, and only while
the scheduler thread and every service are alive.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from mailopsd.core import logs, sdnotify
from mailopsd.core.config import load_config
from mailopsd.core.config.schema import Config
from mailopsd.core.errors import ConfigError, JobBusyError, MailopsError
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import run_job
from mailopsd.daemon.scheduling import make_scheduler, schedule_jobs
from mailopsd.daemon.services import Services
from mailopsd.daemon.status import StatusWriter


class Daemon:
    """``mailopsd run``: schedule jobs, run services, obey signals, talk to systemd."""

    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self.log = get_logger("daemon")
        self.state = StateDB(config.daemon.state_dir)
        self.scheduler: Any = None
        self.services = Services(self.log)
        self._running: dict[str, threading.Event] = {}
        self._running_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._reload = False
        self.status_writer: StatusWriter | None = None

    def _schedule_jobs(self) -> None:
        schedule_jobs(self.scheduler, self.config, self.state, self._run_scheduled, self.log)

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

    # -- lifecycle ----------------------------------------------------------------------------
    def alive(self) -> bool:
        """Scheduler thread and every service alive: only then is WATCHDOG=1 sent."""
        thread = getattr(self.scheduler, "_thread", None)
        if self.scheduler is None or not self.scheduler.running:
            return False
        if thread is not None and not thread.is_alive():
            return False
        return self.services.alive()

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
            parts.append("services: " + ",".join(self.services.ids()))
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
            self._verdict(False, [str(p) for p in exc.problems])
            return False
        old = self.config
        self.config = new
        if new.logging != old.logging:
            logs.configure_from(new)
        self._schedule_jobs()
        if (new.blocker, new.sent, new.daemon, new.live_learn, new.spamassassin,
                new.cluster) != (old.blocker, old.sent, old.daemon, old.live_learn,
                                 old.spamassassin, old.cluster):
            self.services.stop(new.daemon.stop_timeout)
            self.services.start(self.config, self.state)
        self.log.info("config_reloaded", path=self.config_path)
        sdnotify.notify("READY=1")
        self._update_status()
        self._verdict(True, [])
        return True

    def _verdict(self, applied: bool, problems: list[str]) -> None:
        """Tell ``mailopsd reload`` (ExecReload) the outcome; never fails the reload itself."""
        from mailopsd.daemon.reload_verdict import write_verdict

        try:
            write_verdict(self.config.daemon.run_dir, applied, problems)
        except OSError as exc:
            self.log.warning("reload_verdict_not_written", error=str(exc))

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        interrupted = self.state.interrupt_stale_runs()
        if interrupted:
            self.log.warning("job_runs_interrupted", count=interrupted)
        self.scheduler = make_scheduler(self.config)
        self._schedule_jobs()
        self.scheduler.start()
        self.services.start(self.config, self.state)
        self.status_writer = StatusWriter(self)  # `mailopsd status` reads its snapshot
        self.status_writer.start()
        self.log.info("daemon_started", pid=os.getpid(), config=self.config_path,
                      jobs=[j.id for j in self.scheduler.get_jobs()],
                      services=self.services.ids())
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
        if self.status_writer is not None:
            self.status_writer.stop()
        self.services.stop(max(1.0, deadline - time.monotonic()))
        self.log.info("daemon_stopped")
        return 0
