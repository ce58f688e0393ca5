"""The real daemon process: reload, catch-up, the job lock shared with run-job, stopping."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from mailopsd.core.locks import job_lock
from mailopsd.core.state import StateDB
from tests.support.daemon import MailopsdProcess, run_cli, write_config

pytestmark = pytest.mark.integration


def seed_old_success(state_dir: Path, job: str, days_ago: float) -> None:
    state = StateDB(str(state_dir))
    run_id = state.job_started(job, "schedule", started=time.time() - days_ago * 86400)
    state.job_finished(run_id, "ok")


def test_sighup_with_bad_config_keeps_the_old_one_then_good_config_applies(
        tmp_path: Path) -> None:
    config = write_config(tmp_path)
    good = config.read_text()
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        config.write_text(good + '\n[jobs.sa-update]\nschedule = "not cron"\nbogus = 1\n')
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_event("config_reload_failed")
        assert any("jobs.sa-update.schedule" in p for p in failed["problems"])
        assert any("jobs.sa-update.bogus" in p for p in failed["problems"])
        assert daemon.proc.poll() is None, "a bad reload must not stop the daemon"
        config.write_text(good + '\n[jobs.housekeeping]\nschedule = "5 1 * * 0"\n')
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config_reloaded")
        assert daemon.stop() == 0
        daemon.wait_event("daemon_stopped")


def test_missed_run_is_caught_up_soon_after_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, daemon={"catch_up_delay": "0s"})
    seed_old_success(tmp_path / "state", "housekeeping", days_ago=3)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("job_catch_up_scheduled", job="housekeeping")
        daemon.wait_event("job_finished", job="housekeeping", timeout=15)
        started = daemon.wait_event("job_started", job="housekeeping")
        assert started["trigger"] == "catch-up"
    assert StateDB(str(tmp_path / "state")).last_run("housekeeping").trigger == "catch-up"  # type: ignore[union-attr]


def test_recent_run_is_not_caught_up(tmp_path: Path) -> None:
    config = write_config(tmp_path, daemon={"catch_up_delay": "0s"})
    seed_old_success(tmp_path / "state", "housekeeping", days_ago=0.0001)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        time.sleep(1.0)
        assert not [e for e in daemon.events() if e.get("event") == "job_catch_up_scheduled"]


def test_run_job_is_refused_while_the_daemon_runs_the_same_job(tmp_path: Path) -> None:
    config = write_config(tmp_path, daemon={"catch_up_delay": "2s"})
    seed_old_success(tmp_path / "state", "housekeeping", days_ago=3)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        # hold the state database's write lock so the daemon's run stays in progress
        blocker = sqlite3.connect(str(tmp_path / "state" / "state.db"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            lock = job_lock(str(tmp_path / "run"), "housekeeping")
            deadline = time.monotonic() + 15
            while not lock.held_elsewhere():
                assert time.monotonic() < deadline, "daemon never started the job"
                time.sleep(0.05)
            assert lock.holder() == daemon.pid
            busy = run_cli(config, "run-job", "housekeeping")
            assert busy.returncode == 75, busy.stderr
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        daemon.wait_event("job_finished", job="housekeeping", timeout=15)
    assert run_cli(config, "run-job", "housekeeping").returncode == 0


def test_second_daemon_on_the_same_state_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        second = run_cli(config, "run", timeout=20)
        assert second.returncode == 75
        assert str(daemon.pid) in second.stderr
        status = run_cli(config, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f'"pid": {daemon.pid}' in status.stdout
    assert run_cli(config, "status").returncode == 3


def test_sigterm_stops_promptly_with_exit_0(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        start = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - start < 5
