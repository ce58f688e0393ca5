"""Being told: failure mails (one per job per interval, across processes), dry runs that are not
runs, ``jobs --history``, and ``status`` exit codes from the daemon's snapshot.

The mail goes to a stand-in ``sendmail`` script (a real program run through process.run) that
appends what it reads; tests/integration/test_status_notify_real.py sends through real Exim.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from mailopsd.cli.main import main
from mailopsd.core import logs
from mailopsd.core.config import parse_config
from mailopsd.core.locks import FileLock
from mailopsd.core.state import StateDB
from mailopsd.daemon import runner
from mailopsd.daemon.notify import claim
from mailopsd.daemon.runner import JobResult, run_job
from mailopsd.daemon.status import write_atomic


@pytest.fixture(autouse=True)
def quiet() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    logs.configure("json", "info", stream=buf)
    yield buf
    structlog.reset_defaults()


def sendmail(tmp_path: Path) -> Path:
    script = tmp_path / "sendmail"
    script.write_text(f'#!/bin/sh\necho "ARGS: $*" >> {tmp_path}/mails\n'
                      f'cat >> {tmp_path}/mails\necho "--END--" >> {tmp_path}/mails\n')
    script.chmod(0o755)
    return tmp_path / "mails"


def config(tmp_path: Path, **notify: Any) -> Any:
    return parse_config({
        "daemon": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
        "binaries": {"sendmail": str(tmp_path / "sendmail")},
        "notify": {"mail_to": ["root", "admin@example.test"], **notify},
        "blocker": {"enabled": False}})


def failing(ctx: Any) -> JobResult:
    ctx.log.error("bayes_db_unreadable", path="/var/lib/spamassassin/bayes_toks")
    return JobResult(ok=False, message="the database is unreadable")


def test_claim_allows_one_mail_per_interval_across_connections(tmp_path: Path) -> None:
    a, b = StateDB(str(tmp_path)), StateDB(str(tmp_path))  # two processes' handles
    assert claim(a, "learn-spam", 3600, now=1000.0) == 0
    assert claim(b, "learn-spam", 3600, now=1500.0) is None
    assert claim(a, "learn-spam", 3600, now=2000.0) is None
    assert claim(b, "sa-update", 3600, now=2000.0) == 0  # another job, its own budget
    assert claim(b, "learn-spam", 3600, now=4601.0) == 2  # two held back meanwhile


def test_a_failed_run_mails_once_per_interval_with_error_and_last_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = sendmail(tmp_path)
    monkeypatch.setattr(runner, "job_function", lambda _job: failing)
    cfg = config(tmp_path)
    for trigger in ("schedule", "run-job", "catch-up"):
        out = run_job("bayes-stats", cfg, StateDB(str(tmp_path / "state")), trigger=trigger)
        assert out.result == "failed"
    text = mails.read_text()
    assert text.count("--END--") == 1
    assert "ARGS: -oi -t" in text and "To: root, admin@example.test" in text
    assert "Subject: mailopsd on " in text and "job bayes-stats failed" in text
    assert "error: the database is unreadable" in text and "started by: schedule" in text
    assert "bayes_db_unreadable" in text  # the run's own log lines
    assert "Auto-Submitted: auto-generated" in text


def test_no_mail_without_mail_to_and_none_for_a_dry_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = sendmail(tmp_path)
    monkeypatch.setattr(runner, "job_function", lambda _job: failing)
    run_job("bayes-stats", config(tmp_path), StateDB(str(tmp_path / "s1")), dry_run=True)
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "s2"),
                                   "run_dir": str(tmp_path / "run")},
                        "binaries": {"sendmail": str(tmp_path / "sendmail")}})
    run_job("bayes-stats", cfg, StateDB(str(tmp_path / "s2")))
    assert not mails.exists()


def test_mail_to_refuses_what_could_inject_headers_or_options() -> None:
    from mailopsd.core.errors import ConfigError

    for bad in ("-oQ/tmp", "root\nBcc: x@example.test", "a b", ""):
        with pytest.raises(ConfigError, match=r"notify\.mail_to"):
            parse_config({"notify": {"mail_to": [bad]}})
    assert parse_config({"notify": {"mail_to": ["root", "ops+mail@example.org"]}})


def test_a_dry_run_is_not_recorded_and_history_shows_real_runs_with_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = tmp_path / "mailopsd.toml"
    cfg_path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
                        f'run_dir = "{tmp_path}/run"\n[logging]\ntarget = "json"\n'
                        'level = "warning"\n')
    calls: list[bool] = []

    def learned(ctx: Any) -> JobResult:
        calls.append(ctx.dry_run)
        return JobResult(counts={"spam": 3, "ham": 1, "per_user": {"alice": {"spam": 3}}})

    monkeypatch.setattr(runner, "job_function", lambda _job: learned)
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "state"),
                                   "run_dir": str(tmp_path / "run")}})
    state = StateDB(str(tmp_path / "state"))
    run_job("learn-spam", cfg, state, trigger="schedule")
    run_job("learn-spam", cfg, state, trigger="run-job", dry_run=True)
    assert calls == [False, True]
    assert [r.trigger for r in state.history("learn-spam")] == ["schedule"]
    assert state.last_run("learn-spam") is not None
    assert main(["--config", str(cfg_path), "jobs", "--history", "learn-spam", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["counts"]["per_user"] == {"alice": {"spam": 3}}
    assert rows[0]["result"] == "ok" and rows[0]["started"][-6] in "+-"
    assert main(["--config", str(cfg_path), "jobs", "--history", "learn-spam"]) == 0
    assert "spam=3 ham=1" in capsys.readouterr().out
    assert main(["--config", str(cfg_path), "jobs", "--history", "no-such-job"]) == 2


def _status(cfg_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    rc = main(["--config", str(cfg_path), "status", "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_status_exit_codes_follow_the_daemon_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = tmp_path / "mailopsd.toml"
    run = tmp_path / "run"
    cfg_path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\nrun_dir = "{run}"\n'
                        f'[logging]\ntarget = "json"\nlevel = "warning"\n'
                        f'[blocker]\nmainlog = "{tmp_path}/mainlog"\n')
    rc, data = _status(cfg_path, capsys)
    assert rc == 3 and data["daemon"]["running"] is False
    assert data["blocker"]["running"] is False and data["blocker"]["file"].endswith("mainlog")

    lock = FileLock(str(run / "mailopsd.pid"))
    lock.acquire()
    try:
        blocker = {"file": f"{tmp_path}/mainlog", "position": 1234, "following": True,
                   "active_bans": {"no-rdns": 2, "manual": 1}, "degraded": False,
                   "problems": [], "kernel_check": {"at": "2026-12-07T10:00:00+00:00",
                                                   "ok": True}}
        snap = {"pid": os.getpid(), "written": time.time(), "written_at": "x",
                "services": {"blocker": blocker}}
        write_atomic(str(run / "status.json"), snap)
        rc, data = _status(cfg_path, capsys)
        assert rc == 0, data["problems"]
        assert data["blocker"]["position"] == 1234
        assert data["blocker"]["active_bans"] == {"no-rdns": 2, "manual": 1}

        blocker.update(following=False, degraded=True,
                       problems=["following nothing: /var/log/exim4/mainlg"])
        write_atomic(str(run / "status.json"), snap)
        rc, data = _status(cfg_path, capsys)
        assert rc == 1 and "blocker: following nothing" in data["problems"][0]
        assert main(["--config", str(cfg_path), "status"]) == 1
        assert "NOT following" in capsys.readouterr().out

        blocker.update(following=True, degraded=False, problems=[])
        snap["written"] = time.time() - 120  # the daemon stopped writing: hung
        write_atomic(str(run / "status.json"), snap)
        rc, data = _status(cfg_path, capsys)
        assert rc == 1 and "old (hung?)" in data["problems"][0]

        snap["written"] = time.time()
        write_atomic(str(run / "status.json"), snap)
        state = StateDB(str(tmp_path / "state"))
        state.job_finished(state.job_started("sa-update", "schedule"), "failed", {}, "rc 4")
        rc, data = _status(cfg_path, capsys)
        assert rc == 1 and data["failed"] == ["sa-update"]
    finally:
        lock.release()


def test_migration_7_forgets_dry_runs_recorded_by_older_versions(tmp_path: Path) -> None:
    import sqlite3

    from mailopsd.core.state import MIGRATIONS, split_sql

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _purpose, sql in MIGRATIONS:
        if number <= 4:
            for statement in split_sql(sql):
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    rows = [("sa-update", '{"dry_run": true}'), ("sa-update", '{"rc": 0, "outcome": "updated"}'),
            ("make-forwards", '{"written": 2, "dry_run": false}')]
    conn.executemany("INSERT INTO job_runs (job, trigger, pid, started, finished, result, "
                     "counts) VALUES (?, 'run-job', 1, 1.0, 2.0, 'ok', ?)", rows)
    conn.close()
    state = StateDB(str(tmp_path))
    left = [(r.job, dict(r.counts)) for r in state.history()]
    assert sorted(left, key=str) == sorted([("sa-update", {"rc": 0, "outcome": "updated"}),
                                            ("make-forwards", {"written": 2, "dry_run": False})],
                                           key=str)


class _Service:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def alive(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"degraded": bool(self.problems), "problems": list(self.problems)}


class _Daemon:
    def __init__(self, cfg: Any, service: _Service) -> None:
        import threading
        from types import SimpleNamespace

        self.config = cfg
        self.config_path = "/etc/mailopsd/mailopsd.toml"
        self.state = StateDB(cfg.daemon.state_dir)
        self.services = SimpleNamespace(running={"blocker": service})
        self._running: dict[str, Any] = {}
        self._running_lock = threading.Lock()


def test_a_service_degraded_in_two_snapshots_in_a_row_mails_once_then_recovers(
        tmp_path: Path, quiet: io.StringIO) -> None:
    from mailopsd.daemon.status import StatusWriter, read_snapshot

    mails = sendmail(tmp_path)
    cfg = config(tmp_path)
    (tmp_path / "run").mkdir()
    svc = _Service()
    writer = StatusWriter(_Daemon(cfg, svc))
    writer.write_once()
    svc.problems = ["following nothing: /var/log/exim4/mainlg (No such file or directory)"]
    writer.write_once()  # once could be a reload or a rotation: no alert yet
    assert not mails.exists()
    for _ in range(3):
        writer.write_once()
    snap = read_snapshot(str(tmp_path / "run"))
    assert snap is not None and snap["services"]["blocker"]["degraded"] is True
    assert mails.read_text().count("--END--") == 1
    assert "service blocker degraded" in mails.read_text() and "mainlg" in mails.read_text()
    svc.problems = []
    writer.write_once()
    events = [json.loads(x)["event"] for x in quiet.getvalue().splitlines()]
    assert events.count("service_degraded") == 1 and events.count("service_recovered") == 1
    writer.stop()
    assert read_snapshot(str(tmp_path / "run")) is None
