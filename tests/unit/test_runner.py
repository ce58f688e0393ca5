"""One job run: lock, history, result mapping, timeout; and run-job's exit codes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import JobBusyError, JobCancelled
from mailopsd.core.locks import job_lock
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import JobResult, run_job
from tests.support.daemon import run_cli, write_config


@pytest.fixture()
def sandbox(tmp_path: Path) -> tuple[object, StateDB]:
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "state"),
                                   "run_dir": str(tmp_path / "run")},
                        "jobs": {"housekeeping": {"timeout": "1s"}}})
    return cfg, StateDB(cfg.daemon.state_dir)


def fake_job(monkeypatch: pytest.MonkeyPatch, fn) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("mailopsd.daemon.runner.job_function", lambda _id: fn)


def test_successful_run_is_recorded_with_counts(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg, state = sandbox
    fake_job(monkeypatch, lambda ctx: JobResult(counts={"learned": 3}))
    outcome = run_job("housekeeping", cfg, state)
    assert outcome.result == "ok"
    last = state.last_run("housekeeping")
    assert last is not None and last.result == "ok" and last.counts == {"learned": 3}
    assert last.duration is not None and last.duration >= 0


def test_job_exception_is_a_failed_run_not_a_crash(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg, state = sandbox

    def boom(ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    fake_job(monkeypatch, boom)
    outcome = run_job("housekeeping", cfg, state)
    assert outcome.result == "failed" and "disk on fire" in (outcome.error or "")
    assert state.last_run("housekeeping").result == "failed"  # type: ignore[union-attr]


def test_timeout_cancels_the_job_and_fails_it(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg, state = sandbox

    def slow(ctx):  # type: ignore[no-untyped-def]
        ctx.cancel.wait(10)
        ctx.check_cancel()
        return JobResult()

    fake_job(monkeypatch, slow)
    start = time.monotonic()
    outcome = run_job("housekeeping", cfg, state)
    assert time.monotonic() - start < 5
    assert outcome.result == "failed" and "timed out" in (outcome.error or "")


def test_stop_request_records_cancelled(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg, state = sandbox
    cancel = threading.Event()

    def wait_for_stop(ctx):  # type: ignore[no-untyped-def]
        cancel.set()
        ctx.check_cancel()
        raise AssertionError("not reached")

    fake_job(monkeypatch, wait_for_stop)
    outcome = run_job("housekeeping", cfg, state, cancel=cancel)
    assert outcome.result == "cancelled"
    assert state.last_run("housekeeping").result == "cancelled"  # type: ignore[union-attr]


def test_second_run_while_locked_is_busy(sandbox) -> None:  # type: ignore[no-untyped-def]
    cfg, state = sandbox
    lock = job_lock(cfg.daemon.run_dir, "housekeeping")
    lock.acquire()
    try:
        with pytest.raises(JobBusyError, match="already running"):
            run_job("housekeeping", cfg, state)
    finally:
        lock.release()
    assert run_job("housekeeping", cfg, state).result == "ok"


def test_run_job_exits_75_while_another_process_holds_the_job(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from mailopsd.core.locks import job_lock\n"
        f"l = job_lock({str(tmp_path / 'run')!r}, 'housekeeping'); l.acquire()\n"
        "print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = run_cli(config, "run-job", "housekeeping")
        assert busy.returncode == 75, busy.stderr
        assert "already running" in busy.stderr and str(holder.pid) in busy.stderr
    finally:
        holder.kill()
        holder.wait()
    ok = run_cli(config, "run-job", "housekeeping")
    assert ok.returncode == 0, ok.stderr


def test_unknown_job_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(write_config(tmp_path), "run-job", "learn-hams")
    assert result.returncode == 2
    assert "unknown job 'learn-hams'" in result.stderr


def test_cancelled_helper_raises(sandbox) -> None:  # type: ignore[no-untyped-def]
    from mailopsd.daemon.runner import JobContext

    cfg, state = sandbox
    ev = threading.Event()
    ctx = JobContext("housekeeping", cfg, cfg.jobs.get("housekeeping"), state, None, ev)
    ctx.check_cancel()
    ev.set()
    with pytest.raises(JobCancelled):
        ctx.check_cancel()
