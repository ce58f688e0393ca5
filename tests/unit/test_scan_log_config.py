"""scan-log reads the configuration like every command, names it, and prints lines on request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailopsd.cli.main import main


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILOPSD_CONFIG", raising=False)


def stamp(offset: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3600 + offset))


def mainlog(path: Path) -> Path:
    lines = [f"{stamp(i)} no host name found for IP address 198.51.100.7" for i in range(4)]
    lines += [f"{stamp(10 + i)} no host name found for IP address 192.0.2.9" for i in range(4)]
    lines += [f"{stamp(20)} no host name found for IP address not-an-address",
              f"{stamp(21)} Start queue run: pid=1234"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "mailopsd.toml"
    path.write_text('[logging]\ntarget = "json"\n[blocker]\nignore = ["198.51.100.0/24"]\n'
                    '[blocker.rules.no-rdns]\nmaxretry = 3\n')
    return path


def test_scan_log_uses_the_installed_config_and_names_it(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = mainlog(tmp_path / "mainlog")
    # global options after the command name, as an admin types them
    assert main(["scan-log", "--config", str(conf), "--log-level", "error", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"config {conf}; rules: no-rdns, ")
    assert "1 ban(s) would be made" in out  # the ignore-listed office is not "banned"
    assert "198.51.100.7  no-rdns" not in out and "192.0.2.9" in out
    assert main(["scan-log", "--no-config", "--json", str(log)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"] is None and "no-rdns" in data["rules_used"]
    assert data["rules"]["no-rdns"]["maxretry"] > 4 and data["bans"] == []  # the built-in


def test_scan_log_without_a_config_file_says_how_to_scan_anyway(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = mainlog(tmp_path / "mainlog")
    assert main(["scan-log", "-c", str(tmp_path / "nothere.toml"), str(log)]) == 2
    assert "--no-config" in capsys.readouterr().err


def test_print_matched_and_missed_lines_like_fail2ban_regex(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = mainlog(tmp_path / "mainlog")
    assert main(["--config", str(conf), "scan-log", "--print-matched", "--print-missed",
                 str(log)]) == 0
    out = capsys.readouterr().out
    assert "matched lines (8):" in out and "missed lines (2):" in out
    assert "  [no-rdns 192.0.2.9] " in out
    assert "  [near miss: no-rdns] " in out and "not-an-address" in out
    assert main(["--config", str(conf), "scan-log", "--print-missed", "--json", str(log)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "matched_lines" not in data
    assert [m["line"].split()[-1] for m in data["missed_lines"]] == ["not-an-address",
                                                                      "pid=1234"]
    ban = data["bans"][0]
    assert ban["first_seen"][4] == "-" and ban["last_seen"][-6] in "+-"  # ISO with offset


def test_a_file_without_exim_lines_gets_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    syslog = tmp_path / "syslog"
    syslog.write_text("Dec  7 10:00:00 host exim[1]: no host name found for IP address "
                      "192.0.2.9\n" * 5)
    assert main(["scan-log", "--no-config", str(syslog)]) == 0
    err = capsys.readouterr().err
    assert "warning: no line of" in err and "looked like an Exim mainlog line" in err
    empty = tmp_path / "empty"
    empty.write_text("")
    assert main(["scan-log", "--no-config", "--json", str(empty)]) == 0
    assert json.loads(capsys.readouterr().out)["warning"].endswith("is empty")
