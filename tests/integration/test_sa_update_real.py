"""sa-update with the real tools: `sa-update --install` of a channel signed by a throwaway GPG key,
real `spamassassin --lint`, a real spamd on a loopback port reloaded (or not) by its pid file.

The rules owner is a test user; the update directory and keyring are temp dirs (never the
system's /var/lib/spamassassin). The channel holds two stock rule files (the TLD list and the
default prefs) plus the test's own rules, so each lint and spamd start takes well under 1 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job
from mailopsd.spam.rules_snapshot import fingerprint
from mailopsd.spam.spamassassin import channel_versions
from tests.support.common import (
    free_port,
    kill_pid,
    make_test_root,
    read_pid,
    remove_test_root,
    wait_until,
)
from tests.support.users import TestUser

pytestmark = pytest.mark.integration

VERSION = "4.000001"  # SpamAssassin 4.0.1's on-disk version (Debian 12)
STOCK = ("10_default_prefs.cf", "20_aux_tlds.cf")
BASE_RULE = "header MAILOPSD_BASE_RULE Subject =~ /mailopsd-base-token/\n"
TEST_RULE = BASE_RULE + ("header MAILOPSD_TEST_RULE Subject =~ /mailopsd-test-token/\n"
             "describe MAILOPSD_TEST_RULE mailopsd test rule\nscore MAILOPSD_TEST_RULE 0.1\n"
             "body MAILOPSD_BODY_RULE /mailopsd-body-token/\n")  # something for sa-compile
# Valid only with the URIDetail plugin, which sa-update's own lint loads (/etc/spamassassin)
# but the test's site config does not: sa-update installs it (rc 0), our lint must catch it.
NEEDS_URIDETAIL = ("uri_detail MAILOPSD_URI_DETAIL host =~ /example\\.invalid/\n"
                   "score MAILOPSD_URI_DETAIL 0.1\n")
MESSAGE = b"From: a@example.test\nTo: b@example.test\nSubject: mailopsd-test-token\n\nhello\n"


@dataclass
class World:
    """What every test here shares: the signer, the tarballs, the rules owner, a site config."""

    root: Path
    owner: TestUser
    fingerprint: str
    key_file: Path
    site: Path
    tarballs: dict[str, Path]


def _gpg(home: Path, *args: str, input: bytes | None = None) -> str:
    res = subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], input=input,
                         capture_output=True, timeout=60, check=True)
    return res.stdout.decode()


def _channel(out: Path, version: str, extra: str, signer: Path, tamper: bool = False) -> Path:
    """A flat <version>.tar.gz with .sha256, .sha512 and a detached .asc, as sa-update wants."""
    src = out / f"src-{version}"
    src.mkdir()
    for name in STOCK:
        shutil.copy(f"/usr/share/spamassassin/{name}", src / name)
    (src / "99_mailopsd_test.cf").write_text(extra)
    tarball = out / f"{version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f.name)
    _gpg(signer, "--armor", "--detach-sign", "-o", f"{tarball}.asc", str(tarball))
    if tamper:  # changed after signing; the checksums match the new bytes, the signature not
        with tarfile.open(tarball, "w:gz") as tar:
            (src / "99_mailopsd_test.cf").write_text(extra + "score MAILOPSD_TEST_RULE 50\n")
            for f in sorted(src.iterdir()):
                tar.add(f, arcname=f.name)
    data = tarball.read_bytes()
    Path(f"{tarball}.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    Path(f"{tarball}.sha512").write_text(hashlib.sha512(data).hexdigest() + "\n")
    for p in out.glob(f"{version}.tar.gz*"):
        p.chmod(0o644)
    return tarball


def _kill_agents(homedir: Path) -> None:
    """Stop exactly the gpg-agents gpg started for ``homedir`` (by pid)."""
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "gpg-agent" and str(homedir) in cmd:
            kill_pid(proc.info["pid"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = make_test_root("mo-saupd-")
    signer = root / "signer"
    signer.mkdir(mode=0o700)
    try:
        with TestUser(root, maildir=False) as owner:
            _gpg(signer, "--gen-key", input=b"%no-protection\nKey-Type: RSA\nKey-Length: 2048\n"
                 b"Key-Usage: sign\nName-Real: mailopsd test channel\n"
                 b"Name-Email: channel@example.test\nExpire-Date: 0\n%commit\n")
            fpr = next(line.split(":")[9] for line in _gpg(
                signer, "--with-colons", "--list-keys").splitlines() if line.startswith("fpr"))
            key_file = root / "channel-key.asc"
            key_file.write_text(_gpg(signer, "--armor", "--export", fpr))
            key_file.chmod(0o644)
            site = root / "site"  # the .pre files minus URIDetail, no local.cf
            site.mkdir()
            for pre in Path("/etc/spamassassin").glob("*.pre"):
                lines = pre.read_text().splitlines(keepends=True)
                (site / pre.name).write_text("".join(
                    x for x in lines if "Plugin::URIDetail" not in x))
            tarballs = {
                "base": _channel(root, "1000001", BASE_RULE, signer),
                "good": _channel(root, "1000002", TEST_RULE, signer),
                "tampered": _channel(root, "1000003", TEST_RULE, signer, tamper=True),
                "lint": _channel(root, "1000004", TEST_RULE + NEEDS_URIDETAIL, signer),
            }
            yield World(root, owner, fpr, key_file, site, tarballs)
    finally:
        _kill_agents(signer)
        for keyring in root.glob("*/keys"):
            _kill_agents(keyring)
        remove_test_root(root)


def update_dir(world: World, name: str) -> tuple[Path, Path]:
    """A fresh update dir and keyring owned by the rules owner."""
    base = world.root / name
    base.mkdir()
    (base / "rules").mkdir()
    (base / "keys").mkdir(mode=0o700)
    for d in (base / "rules", base / "keys"):
        os.chown(d, world.owner.uid, world.owner.gid)
    return base / "rules", base / "keys"


def sa_update(world: World, rules: Path, keys: Path, install: str, pidfile: Path | None = None,
              dry_run: bool = False, **job: Any) -> tuple[RunOutcome, list[dict[str, Any]]]:
    """Run the sa-update job exactly as the daemon would; returns the outcome and events."""
    state = rules.parent / "state"
    job.setdefault("gpg_keys", [world.fingerprint])
    cfg = parse_config({
        "daemon": {"state_dir": str(state), "run_dir": str(rules.parent / "run")},
        "spamassassin": {"rules_owner": world.owner.name, "update_dir": str(rules),
                         "gpg_homedir": str(keys), "site_config_dir": str(world.site),
                         "spamd_units": [], "spamd_pidfile": str(pidfile or state / "none.pid")},
        "jobs": {"sa-update": {"install": str(world.tarballs[install]), "reload_wait": "30s",
                               **job}},
    })
    with capture_logs() as events:
        outcome = run_job("sa-update", cfg, StateDB(cfg.daemon.state_dir), dry_run=dry_run)
    return outcome, events


def names(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["event"]) for e in events]


def installed(rules: Path) -> dict[str, str]:
    return channel_versions(str(rules / VERSION))


@dataclass
class Spamd:
    """A real spamd on a loopback port, reading the test's rules directory."""

    port: int
    pidfile: Path
    log: Path

    def tests_hit(self) -> str:
        res = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(self.port), "-y"],
                             input=MESSAGE, capture_output=True, timeout=30, check=False)
        return res.stdout.decode().strip()

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)


@pytest.fixture
def spamd_for(world: World) -> Iterator[Any]:
    started: list[Spamd] = []

    def start(rules: Path) -> Spamd:
        run = rules.parent / "spamd"
        run.mkdir()
        s = Spamd(free_port(), run / "spamd.pid", run / "spamd.log")
        subprocess.run(["spamd", "-i", f"127.0.0.1:{s.port}", "--pidfile", str(s.pidfile),
                        "-s", str(s.log), "-d", "-m", "1", "--min-spare", "1", "-x",
                        "--configpath", str(rules / VERSION), "--siteconfigpath", str(world.site)],
                       check=True, timeout=60, capture_output=True)
        started.append(s)
        wait_until(lambda: s.count("server started on") == 1 and read_pid(s.pidfile), 30,
                   what="spamd to start")
        return s

    yield start
    for s in started:  # spamd's own pid file names its current pid (it changes on a HUP)
        pid = read_pid(s.pidfile)
        if pid:
            kill_pid(pid)


def test_spamd_is_reloaded_only_after_a_good_verified_update(world: World, spamd_for: Any
                                                             ) -> None:
    rules, keys = update_dir(world, "reload")
    outcome, events = sa_update(world, rules, keys, "base",
                                gpg_key_files=[str(world.key_file)])
    assert outcome.result == "ok", (outcome.error, events)
    assert {"sa_update_key_imported", "sa_update_installed", "spamd_not_running"} <= \
        set(names(events))
    assert installed(rules) == {"updates_spamassassin_org": "1000001"}
    assert all(os.stat(p).st_uid == world.owner.uid for p in rules.rglob("*"))

    spamd = spamd_for(rules)
    assert "MAILOPSD_TEST_RULE" not in spamd.tests_hit()
    first_pid = read_pid(spamd.pidfile)

    outcome, events = sa_update(world, rules, keys, "good", pidfile=spamd.pidfile,
                                sa_compile=True)
    assert outcome.result == "ok", outcome.error
    # sa-compile ran as the owner into <update_dir>/compiled/<perl>/<version>, made readable
    # for spamd's per-user children, before spamd was reloaded
    assert names(events).index("sa_compile_finished") < names(events).index("spamd_reloaded")
    compiled = list((rules / "compiled").glob(f"5.*/{VERSION}/**/body_0.so"))
    assert compiled and os.stat(compiled[0]).st_uid == world.owner.uid
    assert all(os.stat(p).st_mode & 0o044 == 0o044 and not os.stat(p).st_mode & 0o022
               for p in (rules / "compiled").rglob("*"))
    reloaded = next(e for e in events if e["event"] == "spamd_reloaded")
    assert reloaded["method"] == "hup" and reloaded["pid"] == first_pid
    assert spamd.count("server hit by SIGHUP") == 1 and spamd.count("server started on") == 2
    assert installed(rules) == {"updates_spamassassin_org": "1000002"}
    assert "MAILOPSD_TEST_RULE" in spamd.tests_hit()  # spamd really runs the new rules

    good = fingerprint(str(rules / VERSION))
    serving_pid = read_pid(spamd.pidfile)
    for bad in ("tampered", "lint"):
        outcome, events = sa_update(world, rules, keys, bad, pidfile=spamd.pidfile)
        assert outcome.result == "failed"
        assert "spamd_reloaded" not in names(events)
        assert fingerprint(str(rules / VERSION)) == good  # the previous rules, untouched
    assert spamd.count("server hit by SIGHUP") == 1 and read_pid(spamd.pidfile) == serving_pid
    assert "MAILOPSD_TEST_RULE" in spamd.tests_hit()


def test_tampered_tarball_is_refused_and_old_rules_kept(world: World) -> None:
    rules, keys = update_dir(world, "tampered")
    outcome, _ = sa_update(world, rules, keys, "good", gpg_key_files=[str(world.key_file)])
    assert outcome.result == "ok", outcome.error
    before = fingerprint(str(rules / VERSION))
    outcome, events = sa_update(world, rules, keys, "tampered")
    assert outcome.result == "failed" and "exited 4" in (outcome.error or "")
    failed = next(e for e in events if e["event"] == "sa_update_failed")
    assert failed["rc"] == 4 and "GPG" in failed["detail"]
    assert fingerprint(str(rules / VERSION)) == before
    assert installed(rules) == {"updates_spamassassin_org": "1000002"}


def test_unverified_signature_is_refused_unless_gpg_is_off(world: World) -> None:
    rules, keys = update_dir(world, "untrusted")
    outcome, events = sa_update(world, rules, keys, "good", dry_run=True)
    assert outcome.result == "ok" and outcome.counts == {"dry_run": True}
    planned = next(e for e in events if e["event"] == "sa_update_dry_run")
    assert planned["argv"][-2:] == ("--install", str(world.tarballs["good"]))
    assert list(rules.iterdir()) == [] and list(keys.iterdir()) == []  # nothing ran
    # key imported but not named in gpg_keys: sa-update does not trust it
    outcome, events = sa_update(world, rules, keys, "good", gpg_keys=[],
                                gpg_key_files=[str(world.key_file)])
    assert outcome.result == "failed" and outcome.counts["rc"] == 4
    assert not (rules / VERSION).exists()  # and the empty directory it left is gone
    outcome, events = sa_update(world, rules, keys, "good", gpg=False, gpg_keys=[])
    assert outcome.result == "ok", outcome.error  # the seed's --nogpg: checksums only
    assert installed(rules) == {"updates_spamassassin_org": "1000002"}
    assert any("--nogpg" in e.get("argv", ()) for e in events)


def test_lint_failing_rules_are_rolled_back_and_not_reloaded(world: World) -> None:
    rules, keys = update_dir(world, "lint")
    outcome, _ = sa_update(world, rules, keys, "good", gpg_key_files=[str(world.key_file)])
    assert outcome.result == "ok", outcome.error
    before = fingerprint(str(rules / VERSION))
    outcome, events = sa_update(world, rules, keys, "lint")
    assert outcome.result == "failed" and "lint" in (outcome.error or "")
    assert outcome.counts["rc"] == 0  # sa-update itself accepted them
    lint = next(e for e in events if e["event"] == "sa_update_lint_failed")
    assert "MAILOPSD_URI_DETAIL" in lint["detail"]
    assert "sa_update_rules_restored" in names(events)
    assert "spamd_reloaded" not in names(events) and "spamd_not_running" not in names(events)
    assert fingerprint(str(rules / VERSION)) == before
    assert not any(p.name.startswith(".") for p in rules.iterdir())  # no snapshot left behind


def test_empty_directory_trap_is_recovered(world: World) -> None:
    # the trap itself, with sa-update alone: a failed first update leaves an empty
    # updates_spamassassin_org/ and SpamAssassin then finds no rules at all
    bare, keys = update_dir(world, "trap-bare")
    world.owner.run(["sa-update", "--gpghomedir", str(keys), "--import", str(world.key_file)])
    res = world.owner.run(["sa-update", "--gpghomedir", str(keys), "--gpgkey", world.fingerprint,
                           "--updatedir", str(bare / VERSION), "--install",
                           str(world.tarballs["tampered"])], check=False)
    assert res.returncode == 4
    assert [p.name for p in (bare / VERSION).iterdir()] == ["updates_spamassassin_org"]
    lint = subprocess.run(["spamassassin", "--lint", "--configpath", str(bare / VERSION)],
                          capture_output=True, timeout=60, check=False)
    assert lint.returncode != 0 and b"no rules were found" in lint.stderr

    # the same failure under the job: the directory is put back as it was (absent), so
    # SpamAssassin keeps using the packaged rules
    rules, keys = update_dir(world, "trap")
    outcome, events = sa_update(world, rules, keys, "tampered",
                                gpg_key_files=[str(world.key_file)])
    assert outcome.result == "failed" and outcome.counts["rc"] == 4
    restored = next(e for e in events if e["event"] == "sa_update_rules_restored")
    assert "left the directory changed" in restored["reason"]
    assert list(rules.iterdir()) == []


def _on_sa_update(action: Any) -> threading.Event:
    """Act once on the real ``sa-update --install`` this process starts (a watcher thread)."""
    stop = threading.Event()

    def watch() -> None:
        me = psutil.Process()
        while not stop.is_set():
            for p in me.children(recursive=True):
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                if "--install" in cmd and any(c.endswith("sa-update") for c in cmd):
                    action(p.pid)
                    return
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    return stop


@pytest.mark.parametrize("fault", ["killed", "hanging"])
def test_sa_update_killed_or_hanging_fails_and_keeps_the_old_rules(world: World,
                                                                   fault: str) -> None:
    """The real sa-update SIGKILLed, or stopped past the job's timeout, while installing:
    one clear event, a failed result, the rules as they were, no snapshot left behind."""
    rules, keys = update_dir(world, f"fault-{fault}")
    outcome, _ = sa_update(world, rules, keys, "base", gpg_key_files=[str(world.key_file)])
    assert outcome.result == "ok", outcome.error
    before = fingerprint(str(rules / VERSION))
    hit: list[int] = []

    def act(pid: int) -> None:
        os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        hit.append(pid)

    stop = _on_sa_update(act)
    t0 = time.monotonic()
    outcome, events = sa_update(world, rules, keys, "good", timeout="5s")
    stop.set()
    assert hit, "sa-update --install was never seen"
    assert outcome.result == "failed", outcome
    if fault == "killed":
        assert names(events).count("command_failed") == 1
    else:
        # the job's own timer (same length) cancels the command, or the command times out
        assert "timed out" in (outcome.error or "")
        assert names(events).count("command_timeout") + \
            names(events).count("command_cancelled") == 1
        assert time.monotonic() - t0 < 5 + 20  # killed at its timeout: never a hung job
    assert names(events).count("job_failed") == 1
    assert fingerprint(str(rules / VERSION)) == before  # the old rules, whole
    assert not any(p.name.startswith(".") for p in rules.iterdir())
    assert not psutil.pid_exists(hit[0]) or \
        psutil.Process(hit[0]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("fault", ["killed", "hanging"])
def test_spamd_killed_or_hanging_is_one_event_and_a_failed_job(world: World, spamd_for: Any,
                                                               fault: str) -> None:
    """The real spamd SIGKILLed before the reload (its pid file left behind), or stopped
    (SIGSTOP) so that it cannot come back from the SIGHUP within reload_wait: the update is
    installed, the job fails with one spamd_reload_failed event, in bounded time."""
    rules, keys = update_dir(world, f"spamd-{fault}")
    outcome, _ = sa_update(world, rules, keys, "base", gpg_key_files=[str(world.key_file)])
    assert outcome.result == "ok", outcome.error
    spamd = spamd_for(rules)
    pid = read_pid(spamd.pidfile)
    assert pid
    os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        outcome, events = sa_update(world, rules, keys, "good", pidfile=spamd.pidfile,
                                    reload_wait="3s")
        assert outcome.result == "failed" and "spamd" in (outcome.error or ""), outcome
        failed = [e for e in events if e["event"] == "spamd_reload_failed"]
        assert len(failed) == 1
        assert ("died" if fault == "killed" else "did not come back") in failed[0]["detail"]
        assert time.monotonic() - t0 < 3 + 60
        assert installed(rules) == {"updates_spamassassin_org": "1000002"}
    finally:
        if fault == "hanging":
            os.kill(pid, signal.SIGCONT)  # let the fixture stop it by its pid file


def test_sa_update_out_of_disk_fails_and_keeps_the_old_rules(world: World) -> None:
    """The update directory on a small tmpfs that the new rules do not fit in: one clear
    failure, the old rules whole, nothing half-written left behind."""
    rules, keys = update_dir(world, "full")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=256k,mode=0755,uid={world.owner.uid},"
                    f"gid={world.owner.gid}", "tmpfs", str(rules)], check=True)
    try:
        outcome, _ = sa_update(world, rules, keys, "base", gpg_key_files=[str(world.key_file)])
        assert outcome.result == "ok", outcome.error
        before = fingerprint(str(rules / VERSION))
        free = os.statvfs(rules).f_bavail * os.statvfs(rules).f_frsize
        world.owner.run(["dd", "if=/dev/zero", f"of={rules}/filler", "bs=1024",
                         f"count={max(1, free // 1024 - 2)}"], check=False)
        outcome, events = sa_update(world, rules, keys, "good")
        assert outcome.result == "failed", outcome
        assert names(events).count("job_failed") == 1
        assert "job_crashed" not in names(events)  # a clear error, not a traceback
        assert fingerprint(str(rules / VERSION)) == before
        assert sorted(p.name for p in rules.iterdir() if p.name != "filler") == [VERSION]
    finally:
        subprocess.run(["umount", str(rules)], check=False)
