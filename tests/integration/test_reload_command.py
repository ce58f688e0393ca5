"""``mailopsd reload`` (the unit's ExecReload) against the real daemon process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon import MailopsdProcess, run_cli, write_config

pytestmark = pytest.mark.integration


def test_reload_exits_0_once_the_daemon_applied_the_new_config(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        config.write_text(config.read_text() + '\n[jobs.housekeeping]\nschedule = "5 1 * * 0"\n')
        result = run_cli(config, "reload", "--pid", str(daemon.proc.pid))
        assert result.returncode == 0, result.stderr
        assert "applied" in result.stdout
        daemon.wait_event("config_reloaded")
        # a second reload needs a second verdict, not the first one again
        again = run_cli(config, "reload")  # pid from the daemon's pid lock
        assert again.returncode == 0, again.stderr
        assert len([e for e in daemon.events() if e.get("event") == "config_reloaded"]) == 2


def test_reload_of_a_broken_config_exits_2_naming_the_key_and_the_daemon_keeps_running(
        tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with MailopsdProcess(config) as daemon:
        daemon.wait_event("daemon_started")
        good = config.read_text()
        config.write_text(good + '\n[jobs.sa-update]\nbogus = 1\n')
        result = run_cli(config, "reload", "--pid", str(daemon.proc.pid))
        assert result.returncode == 2
        assert "jobs.sa-update.bogus: unknown key" in result.stderr
        assert daemon.proc.poll() is None
        config.write_text(good)
        assert run_cli(config, "reload").returncode == 0


def test_reload_without_a_daemon_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_cli(config, "reload")
    assert result.returncode == 3
    assert "not running" in result.stderr
