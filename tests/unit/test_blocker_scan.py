"""`mailopsd scan-log`: works with no config file, honours one when given, changes nothing,
and decides exactly what the live policy decides line by line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.scan import scan_file
from mailopsd.cli.main import main
from mailopsd.core.config import parse_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from gen_mainlog import generate  # noqa: E402

T0 = time.mktime((2026, 11, 24, 8, 0, 0, 0, 0, -1))


def ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def sample_log(path: Path) -> Path:
    lines = []
    for i in range(12):
        lines.append(f"{ts(T0 + i)} no host name found for IP address 198.51.100.7")
        lines.append(f"{ts(T0 + i)} 1xVyTg-0000db-27 => bob <bob@example.test> R=local_user "
                     "T=maildir_home")
    for i in range(5):
        lines.append(f"{ts(T0 + 20 + i)} login_server authenticator failed for (x) "
                     f"[2001:db8::66]:4000: 535 Incorrect authentication data")
    lines.append(f"{ts(T0 + 30)} no host name found for IP address 999.1.1.1")
    for i in range(5):  # loopback is never banned
        lines.append(f"{ts(T0 + 40 + i)} login_server authenticator failed for (x) "
                     "[127.0.0.1]: 535 Incorrect authentication data")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILOPSD_CONFIG", raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_scan_log_with_no_config_uses_the_built_in_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "scan-log", "--no-config", str(sample_log(tmp_path / "mainlog")))
    assert data["lines"] == 35
    rules = data["rules"]
    assert isinstance(rules, dict)
    assert rules["no-rdns"]["matches"] == 12 and rules["no-rdns"]["unmatched"] == 1
    assert rules["auth-failed"]["matches"] == 10 and rules["auth-failed"]["ignored"] == 1
    bans = data["bans"]
    assert isinstance(bans, list)
    assert [(b["ip"], b["rule"], b["count"], b["duration"]) for b in bans] == [
        ("198.51.100.7", "no-rdns", 11, 3600.0), ("2001:db8::66", "auth-failed", 5, 3600.0)]


def test_scan_log_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan-log", "--no-config", str(sample_log(tmp_path / "mainlog"))]) == 0
    out = capsys.readouterr().out
    assert "35 lines in" in out and "lines/s" in out
    assert "2 ban(s) would be made" in out
    assert any(line.split()[:3] == ["198.51.100.7", "no-rdns", "11"]
               for line in out.splitlines())


def test_scan_log_honours_a_config_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = sample_log(tmp_path / "mainlog")
    with open(log, "a") as f:
        f.write(f"{ts(T0 + 50)} trap hit by 203.0.113.5\n")
    conf = tmp_path / "mailopsd.toml"
    conf.write_text(f"""
[daemon]
state_dir = "{tmp_path}/state"
[blocker]
ignore = ["198.51.100.0/24"]
[blocker.rules.auth-failed]
bantime = "permanent"
[blocker.rules.trap]
regex = 'trap hit by (?P<ip>\\S+)'
prefilter = "trap hit"
maxretry = 1
""")
    data = run_json(capsys, "--config", str(conf), "scan-log", str(log))
    bans = data["bans"]
    assert isinstance(bans, list)
    assert [(b["ip"], b["rule"], b["duration"]) for b in bans] == [
        ("2001:db8::66", "auth-failed", None), ("203.0.113.5", "trap", 3600.0)]
    monkeypatch.setenv("MAILOPSD_CONFIG", str(conf))
    assert run_json(capsys, "scan-log", str(log))["bans"] == bans
    assert not (tmp_path / "state").exists()  # scan-log writes no state


def test_scan_log_reads_gzip_and_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    plain = sample_log(tmp_path / "mainlog").read_bytes()
    gz = tmp_path / "mainlog.2.gz"
    gz.write_bytes(gzip.compress(plain))
    assert len(run_json(capsys, "scan-log", "--no-config", str(gz))["bans"]) == 2  # type: ignore[arg-type]
    r = subprocess.run([sys.executable, "-m", "mailopsd", "scan-log", "--no-config", "--json",
                        "-"],
                       input=plain, capture_output=True, check=True, cwd=REPO,
                       env={**os.environ, "MAILOPSD_CONFIG": ""})
    assert json.loads(r.stdout)["lines"] == 35


def test_scan_log_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan-log", "--no-config", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[blocker.rules.x]\nregex = '('\n")
    assert main(["--config", str(bad), "scan-log", str(tmp_path / "missing")]) == 2
    assert "blocker.rules.x.regex" in capsys.readouterr().err


def test_help_stays_light() -> None:
    code = ("import sys, mailopsd.cli.main as m; m.build_parser(); "
            "print(sorted(k for k in sys.modules if k.startswith(('mailopsd.blocker', "
            "'mailopsd.core.config', 'psutil'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert "mailopsd.blocker" not in out and "psutil" not in out
    help_text = subprocess.run([sys.executable, "-m", "mailopsd", "--help"], capture_output=True,
                               text=True, check=True, cwd=REPO).stdout
    assert "scan-log" in help_text


def test_scan_decides_exactly_what_the_live_policy_decides(tmp_path: Path) -> None:
    log = tmp_path / "mainlog"
    log.write_text("".join(generate(30_000, 7, 6.0, T0)))
    cfg = parse_config({"blocker": {"ignore_self": False}}).blocker
    result = scan_file(str(log), cfg, IgnoreList(()))
    live = BanPolicy(cfg, IgnoreList(()))
    decisions = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            d = live.feed_line(line.rstrip("\n"))
            if d is not None:
                decisions.append(d)
    assert result.lines == live.lines == 30_000
    assert len(decisions) > 20
    assert result.bans == decisions
    assert {k: v["matches"] for k, v in result.rules.items()} == {
        k: live.matches[k] for k in result.rules}


def test_scan_shortcut_never_bans_the_address_a_junk_helo_names(tmp_path: Path) -> None:
    """The forms scan-log reads without the grammar (Debian's default stamp): a junk HELO that
    imitates the rest of the host field, also after 4.99's "H=", must never decide the
    address (it was read as an rDNS name "H=(x)" once, and banned 203.0.113.66)."""
    from tests.support import exim_lines as X
    from tests.support.exim_lines import Host

    victim, client = "203.0.113.66", "198.51.100.7"
    forms = [
        X.auth_failed(Host(client, helo=f"x) [{victim}]: 535 Incorrect authentication data (z"),
                      flag=flag) for flag in (False, True)
    ] + [
        X.relay_denied(Host(client, helo=f"x) [{victim}] F=<a> rejected RCPT <b>: relay not "
                                         "permitted (y")),
        X.nonmail(Host(client, helo=f"x) [{victim}] dropped: too many nonmail commands (z")),
        X.sync_early(Host(client, helo=f"x) [{victim}] input=\"")),
        X.no_ip_for_host(Host(client, helo=f"x) [{victim}]")),
    ]
    log = tmp_path / "mainlog"
    log.write_text("".join(f"{ts(T0 + i)} {line}\n" for i, line in enumerate(forms * 3)))
    cfg = parse_config({"blocker": {"ignore_self": False, "rules": {r: {"maxretry": 1} for r in (
        "no-rdns", "auth-failed", "relay-denied", "sync-error", "nonmail")}}}).blocker
    result = scan_file(str(log), cfg, IgnoreList(()))
    assert victim not in {b.ip for b in result.bans}
    live = BanPolicy(cfg, IgnoreList(()))
    decisions = [d for d in map(live.feed_line, log.read_text().splitlines()) if d is not None]
    assert result.bans == decisions
