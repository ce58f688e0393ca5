"""sa-update's pure parts: argv, exit codes, versions, config checks, snapshot of the rules dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError
from mailopsd.spam.rules_snapshot import RulesSnapshot, fingerprint
from mailopsd.spam.spamassassin import (
    SaUpdateError,
    channel_versions,
    classify_sa_update,
    import_key_argv,
    lint_argv,
    parse_perl_major,
    parse_show,
    parse_version_output,
    read_pidfile,
    reload_spamd,
    sa_compile_argv,
    sa_update_argv,
    version_dir_name,
)

FPR = "6F428C29801962751B735AC0B129CD8E0E1F8724"


def test_gpg_verification_is_on_by_default_with_keyring_and_keys() -> None:
    cfg = parse_config({"jobs": {"sa-update": {"gpg_keys": [FPR]}}})
    job, sa = cfg.jobs.sa_update, cfg.spamassassin
    assert job.gpg is True and job.schedule == "0 5 1 * *" and job.random_delay == 3600
    argv = sa_update_argv("/usr/bin/sa-update", updatedir="/var/lib/spamassassin/4.000001",
                          gpg=job.gpg, gpg_homedir=sa.gpg_homedir, gpg_keys=job.gpg_keys)
    assert argv == ("/usr/bin/sa-update", "-v", "--updatedir", "/var/lib/spamassassin/4.000001",
                    "--gpghomedir", "/var/lib/spamassassin/sa-update-keys", "--gpgkey", FPR)
    assert "--nogpg" not in argv


def test_gpg_false_reproduces_the_seeds_nogpg_and_drops_keys() -> None:
    argv = sa_update_argv("sa-update", updatedir="/u/4.000001", gpg=False, gpg_homedir="/k",
                          gpg_keys=[FPR], channels=["updates.spamassassin.org"])
    assert "--nogpg" in argv and "--gpgkey" not in argv and "--gpghomedir" not in argv
    assert argv[-2:] == ("--channel", "updates.spamassassin.org")


def test_install_mode_and_channels_in_argv() -> None:
    argv = sa_update_argv("sa-update", updatedir="/u/4.000001", gpg=True, gpg_homedir="/k",
                          channels=["a.example", "b.example"], install="/srv/1913435.tar.gz")
    assert argv[-6:] == ("--channel", "a.example", "--channel", "b.example",
                         "--install", "/srv/1913435.tar.gz")
    assert import_key_argv("sa-update", "/k", "/srv/key.asc") == (
        "sa-update", "--gpghomedir", "/k", "--import", "/srv/key.asc")


@pytest.mark.parametrize(("rc", "outcome"), [
    (0, "installed"), (1, "no_updates"), (2, "failed"), (3, "partial"), (4, "failed"),
    (64, "failed"), (255, "failed"), (13, "failed")])
def test_every_exit_code_has_an_outcome(rc: int, outcome: str) -> None:
    got, meaning = classify_sa_update(rc)
    assert got == outcome and meaning


def test_version_directory_names() -> None:
    assert version_dir_name("4.0.1") == "4.000001"
    assert version_dir_name("3.4.6") == "3.004006"
    out = "SpamAssassin version 4.0.1\n  running on Perl version 5.36.0\n"
    assert parse_version_output(out) == "4.000001" and parse_perl_major(out) == "5.036"
    with pytest.raises(SaUpdateError):
        parse_version_output("sa-update version svn1914735")


def test_lint_and_compile_use_the_rules_spamd_loads_and_its_site_config() -> None:
    assert lint_argv("spamassassin", "/u/4.000001", "/etc/spamassassin") == (
        "spamassassin", "--lint", "--siteconfigpath", "/etc/spamassassin",
        "--configpath", "/u/4.000001")
    assert "--configpath" not in lint_argv("spamassassin", None, "/etc/spamassassin")
    assert sa_compile_argv("sa-compile", "/u/4.000001", "/s", "/u/compiled/5.036/4.000001") == (
        "sa-compile", "--quiet", "--siteconfigpath", "/s", "--updatedir",
        "/u/compiled/5.036/4.000001", "--configpath", "/u/4.000001")


@pytest.mark.parametrize(("table", "key"), [
    ({"gpg_keys": ["not a key"]}, "jobs.sa-update.gpg_keys"),
    ({"channels": ["bad channel/../x"]}, "jobs.sa-update.channels"),
    ({"install": "/srv/rules.tar.gz"}, "jobs.sa-update.install"),
    ({"install": "relative/123.tar.gz"}, "jobs.sa-update.install"),
    ({"reload_wait": 0}, "jobs.sa-update.reload_wait"),
])
def test_bad_sa_update_options_are_named(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"jobs": {"sa-update": table}})
    assert key in str(exc.value)


def test_channel_versions_read_the_update_lines(tmp_path: Path) -> None:
    (tmp_path / "updates_spamassassin_org.cf").write_text("# UPDATE version 1913435\ninclude x\n")
    (tmp_path / "local_example.cf").write_text("# something else\n")
    (tmp_path / "updates_spamassassin_org").mkdir()
    assert channel_versions(str(tmp_path)) == {"updates_spamassassin_org": "1913435"}
    assert channel_versions(str(tmp_path / "missing")) == {}


def test_fingerprint_sees_the_empty_directory_trap(tmp_path: Path) -> None:
    rules = tmp_path / "4.000001"
    before = fingerprint(str(rules))
    assert before is None
    (rules / "updates_spamassassin_org").mkdir(parents=True)  # what a failed first run leaves
    assert fingerprint(str(rules)) != before


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_snapshot_puts_a_broken_update_back_exactly(tmp_path: Path) -> None:
    rules = tmp_path / "4.000001"
    (rules / "updates_spamassassin_org").mkdir(parents=True)
    (rules / "updates_spamassassin_org" / "50_rules.cf").write_text("header A From =~ /x/\n")
    (rules / "updates_spamassassin_org.cf").write_text("# UPDATE version 100\n")
    os.symlink("/etc/passwd", rules / "planted-link")  # copied as a link, never followed
    good = _tree(rules)
    snap = RulesSnapshot(sys.executable, str(rules), None)
    snap.take()
    assert not snap.changed() and os.path.isdir(snap.path)
    (rules / "updates_spamassassin_org" / "50_rules.cf").unlink()
    (rules / "updates_spamassassin_org.cf").write_text("# UPDATE version 101\n")
    assert snap.changed()
    snap.restore()
    assert _tree(rules) == good and os.readlink(rules / "planted-link") == "/etc/passwd"
    assert not os.path.exists(snap.path) and not snap.changed()
    snap.discard()  # nothing left to discard: harmless
    assert sorted(os.listdir(tmp_path)) == ["4.000001"]


def test_snapshot_of_an_absent_directory_removes_what_the_run_created(tmp_path: Path) -> None:
    rules = tmp_path / "4.000001"
    snap = RulesSnapshot(sys.executable, str(rules), None)
    snap.take()
    (rules / "updates_spamassassin_org").mkdir(parents=True)
    assert snap.changed()
    snap.restore()
    assert os.listdir(tmp_path) == []


def test_spamd_pid_file_must_be_safe_to_trust(tmp_path: Path) -> None:
    assert read_pidfile(str(tmp_path / "none.pid")) is None
    real = tmp_path / "spamd.pid"
    real.write_text("4242\n")
    link = tmp_path / "link.pid"
    link.symlink_to(real)
    with pytest.raises(SaUpdateError):
        read_pidfile(str(link))  # a symlink is never followed
    real.chmod(0o666)
    with pytest.raises(SaUpdateError):
        read_pidfile(str(real))  # writable by others: anyone could aim our SIGHUP
    real.chmod(0o644)
    if os.geteuid() == 0:
        assert read_pidfile(str(real)) == 4242
        real.write_text("garbage\n")
        with pytest.raises(SaUpdateError):
            read_pidfile(str(real))


def test_systemctl_show_parsing() -> None:
    assert parse_show("LoadState=loaded\nActiveState=active\n") == {
        "LoadState": "loaded", "ActiveState": "active"}


FAKE_SYSTEMCTL = """#!/bin/sh
# show --property=... -- UNIT  |  reload -- UNIT
here="$(dirname "$0")"
echo "$*" >> "$here/calls"
[ -f "$here/no-systemd" ] && { echo "System has not been booted with systemd" >&2; exit 1; }
case "$1 $4" in
  "show spamd.service") printf 'LoadState=loaded\\nActiveState=%s\\n' "$(cat "$here/state")";;
  "show "*) printf 'LoadState=not-found\\nActiveState=inactive\\n';;
esac
exit 0
"""


def _fake_systemctl(tmp_path: Path, state: str) -> Path:
    tool = tmp_path / "systemctl"
    tool.write_text(FAKE_SYSTEMCTL)
    tool.chmod(0o755)
    (tmp_path / "state").write_text(state)
    return tool


def test_reload_uses_the_first_unit_systemd_knows(tmp_path: Path) -> None:
    tool = _fake_systemctl(tmp_path, "active")
    result = reload_spamd(systemctl=str(tool), units=("spamassassin.service", "spamd.service"),
                          pidfile=str(tmp_path / "spamd.pid"), wait=1, timeout=10)
    assert (result.method, result.ok, result.unit) == ("systemctl", True, "spamd.service")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[-1] == "reload -- spamd.service"
    assert not any("reload -- spamassassin.service" in c for c in calls)


def test_inactive_unit_or_no_systemd_reloads_nothing(tmp_path: Path) -> None:
    tool = _fake_systemctl(tmp_path, "inactive")
    result = reload_spamd(systemctl=str(tool), units=("spamd.service",),
                          pidfile=str(tmp_path / "spamd.pid"), wait=1, timeout=10)
    assert (result.method, result.ok) == ("none", True) and "inactive" in result.detail
    (tmp_path / "no-systemd").touch()  # PID 1 is not systemd: fall back to the pid file
    result = reload_spamd(systemctl=str(tool), units=("spamd.service",),
                          pidfile=str(tmp_path / "spamd.pid"), wait=1, timeout=10)
    assert (result.method, result.ok) == ("none", True) and "spamd.pid" in result.detail
    assert not any(c.startswith("reload") for c in (tmp_path / "calls").read_text().splitlines())
