"""Running one job: the single code path shared by the scheduler and ``mailopsd run-job``.

A run takes the job's lock (a flock in the run dir, so the daemon and a run-job in another
process exclude each other), records itself in the state database, binds JOB=<id> to every event,
enforces the job's timeout by setting its cancel event, and records how it ended. A dry run is
not recorded (catch-up and ``mailopsd jobs`` read only real runs). A real run that fails mails
``notify.mail_to`` (see notify.py), whoever started it: the scheduler, a catch-up or run-job.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.config.schema_job import JobSettings
from mailopsd.core.config.types import format_duration
from mailopsd.core.errors import JobCancelled, MailopsError
from mailopsd.core.locks import job_lock
from mailopsd.core.logs import bind_job, capture_job_events, end_capture, get_logger, unbind_job
from mailopsd.core.state import StateDB
from mailopsd.daemon.registry import job_function


@dataclass
class JobContext:
    """Everything a job's run() gets."""

    job: str
    config: Config
    settings: JobSettings
    state: StateDB
    log: Any
    cancel: threading.Event
    dry_run: bool = False
    trigger: str = "run-job"

    def check_cancel(self) -> None:
        """Raise JobCancelled if a stop or the timeout asked this job to end."""
        if self.cancel.is_set():
            raise JobCancelled(f"{self.job} cancelled")


@dataclass
class JobResult:
    """What a job reports: success, counts for the history and summary event, a message."""

    ok: bool = True
    counts: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as recorded."""

    job: str
    result: str  # ok | failed | cancelled
    duration: float
    counts: Mapping[str, Any]
    error: str | None


def run_job(job: str, config: Config, state: StateDB, *, trigger: str = "run-job",
            cancel: threading.Event | None = None, dry_run: bool = False) -> RunOutcome:
    """Run ``job`` once and record it; never raises for a job's own failure.

    Raises JobBusyError if the job is already running, UnknownJobError for a bad id.
    """
    run = job_function(job)
    settings = config.jobs.get(job)
    lock = job_lock(config.daemon.run_dir, job)
    lock.acquire()
    cancel = cancel or threading.Event()
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        cancel.set()

    timer = threading.Timer(settings.timeout, expire)
    timer.daemon = True
    log = get_logger(f"jobs.{job}")
    bind_job(job)
    started = time.monotonic()
    run_id = None if dry_run else state.job_started(job, trigger)
    recent = capture_job_events(job)
    result, counts, error = "failed", {}, None
    try:
        log.info("job_started", trigger=trigger, dry_run=dry_run)
        timer.start()
        ctx = JobContext(job, config, settings, state, log, cancel, dry_run, trigger)
        outcome = run(ctx)
        counts = dict(outcome.counts)
        if outcome.ok:
            result = "ok"
        else:
            error = outcome.message or "job reported failure"
    except JobCancelled as exc:
        if timed_out.is_set():
            error = f"timed out after {format_duration(settings.timeout)}"
        else:
            result, error = "cancelled", str(exc) or "cancelled"
    except MailopsError as exc:
        error = str(exc)
    except Exception as exc:  # a bug in a job must not take the daemon down
        error = f"{type(exc).__name__}: {exc}"
        log.error("job_crashed", error=error, traceback=traceback.format_exc())
    finally:
        timer.cancel()
        duration = time.monotonic() - started
        try:
            if run_id is not None:
                state.job_finished(run_id, result, counts, error)
        finally:
            lock.release()
        fields: dict[str, Any] = {"result": result, "duration": round(duration, 3), **counts}
        if result == "ok":
            log.info("job_finished", **fields)
        elif result == "cancelled":
            log.warning("job_cancelled", error=error, **fields)
        else:
            log.error("job_failed", error=error, **fields)
        end_capture(job)
        if result == "failed" and not dry_run:
            _notify(config, state, job, trigger, error, duration, list(recent))
        unbind_job()
    return RunOutcome(job, result, duration, counts, error)


def _notify(config: Config, state: StateDB, job: str, trigger: str, error: str | None,
            duration: float, lines: list[str]) -> None:
    from mailopsd.daemon.notify import send_failure_mail

    send_failure_mail(config, state, job, f"job {job} failed", [
        ("job", job), ("error", error or "?"), ("started by", trigger),
        ("duration", format_duration(duration)),
        ("rerun", f"mailopsd run-job {job}")], lines)
