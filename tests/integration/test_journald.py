"""Events reach a real systemd-journald with fields an admin can filter on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.daemon import run_cli, write_config
from tests.support.journald import Journald, private_journald

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def journald() -> Journald:  # type: ignore[misc]
    with private_journald() as jd:
        yield jd


def test_run_job_events_are_queryable_by_job_field(journald: Journald, tmp_path: Path) -> None:
    config = write_config(tmp_path, logging={"target": "journald", "level": "info",
                                             "journal_socket": journald.socket_path,
                                             "syslog_identifier": f"mailopsd-{tmp_path.name}"})
    result = run_cli(config, "run-job", "housekeeping")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "with journald reachable nothing should fall back to stderr"
    ident = f"SYSLOG_IDENTIFIER=mailopsd-{tmp_path.name}"
    rows = journald.query("JOB=housekeeping", ident, want=2)
    by_event = {r["EVENT"]: r for r in rows}
    assert {"job_started", "job_finished"} <= set(by_event)
    done = by_event["job_finished"]
    assert done["PRIORITY"] == "6"
    assert done["RESULT"] == "ok"
    assert "HISTORY_PRUNED" in done and "DURATION" in done
    assert done["MESSAGE"].startswith("job_finished ")
    assert done["LOGGER"] == "jobs.housekeeping"


def test_journal_stream_selects_journald_automatically(journald: Journald,
                                                       tmp_path: Path) -> None:
    ident = f"auto-{tmp_path.name}"
    config = write_config(tmp_path, logging={"target": "auto", "syslog_identifier": ident,
                                             "journal_socket": journald.socket_path})
    result = run_cli(config, "run-job", "housekeeping", env={"JOURNAL_STREAM": "8:12345"})
    assert result.returncode == 0, result.stderr
    rows = journald.query(f"SYSLOG_IDENTIFIER={ident}", "EVENT=job_finished")
    assert rows and rows[0]["JOB"] == "housekeeping"


def test_failures_carry_error_priority_and_multiline_fields(journald: Journald) -> None:
    from mailopsd.core import logs

    ident = "mailopsd-multiline"
    logs.configure("journald", "debug", journald.socket_path, ident)
    try:
        log = logs.get_logger("test")
        log.error("job_failed", job="demo-job", error="line one\nline two", count=3)
        logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
        rows = journald.query(f"SYSLOG_IDENTIFIER={ident}", "JOB=demo-job")
        assert rows[0]["PRIORITY"] == "3"
        assert rows[0]["ERROR"] == "line one\nline two"
        assert rows[0]["COUNT"] == "3"
        lib = journald.query(f"SYSLOG_IDENTIFIER={ident}", "LOGGER=apscheduler.scheduler")
        assert lib[0]["MESSAGE"] == "Run time of job was missed"
        assert lib[0]["PRIORITY"] == "4"
    finally:
        logs.configure("json", "info")


def test_large_entry_goes_through_memfd(journald: Journald) -> None:
    from mailopsd.core import logs

    ident = "mailopsd-large"
    logs.configure("journald", "info", journald.socket_path, ident)
    try:
        big = "x" * 400_000  # larger than a datagram can carry
        logs.get_logger("test").info("big_event", payload=big, job="big-job")
        rows = journald.query(f"SYSLOG_IDENTIFIER={ident}", "JOB=big-job")
        assert rows and len(rows[0]["PAYLOAD"]) == 400_000
    finally:
        logs.configure("json", "info")


def test_unreachable_journal_falls_back_to_stderr_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, logging={"target": "journald",
                                             "journal_socket": str(tmp_path / "nope")})
    result = run_cli(config, "run-job", "housekeeping")
    assert result.returncode == 0
    assert '"event": "job_finished"' in result.stderr
