"""Faults of the tools mailopsd drives: the real sa-learn killed with SIGKILL or hanging
(SIGSTOP) past its timeout during bayes-backup, a full disk (a small tmpfs) under the backup,
and the real nft hanging or killed under the blocker's firewall calls. Each gives one clear
event and a failed result, never a hung job or daemon, never a half-written file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job
from tests.support.netns import Netns
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


class Owner:
    """A Bayes owner with a small database, and run_job on its config."""

    def __init__(self, user: TestUser, root: Path) -> None:
        self.user, self.root = user, root
        rng = random.Random(7)
        for kind in ("spam", "ham"):
            folder = root / kind
            folder.mkdir(mode=0o755)
            for i in range(25):
                body = " ".join(f"{kind}{rng.randint(0, 9999)}" for _ in range(40))
                (folder / f"{i}.eml").write_text(f"From: a{i}@example.test\nSubject: {kind} {i}"
                                                 f"\nMessage-ID: <{kind}{i}@x.test>\n\n{body}\n")
                (folder / f"{i}.eml").chmod(0o644)
            user.run(["sa-learn", f"--{kind}", str(folder)], timeout=120)

    def run(self, **job: Any) -> tuple[RunOutcome, list[dict[str, Any]]]:
        cfg = parse_config({
            "daemon": {"state_dir": str(self.root / "state"), "run_dir": str(self.root / "run")},
            "spamassassin": {"bayes_owner": self.user.name, "bayes_lock_wait": "1s"},
            "jobs": {"bayes-backup": job}})
        with capture_logs() as events:
            outcome = run_job("bayes-backup", cfg, StateDB(cfg.daemon.state_dir))
        return outcome, events


@pytest.fixture(scope="module")
def owner() -> Iterator[Owner]:
    from tests.support.common import scratch_root

    with scratch_root() as root, TestUser(root, maildir=False) as user:
        yield Owner(user, root)


def on_sa_learn_backup(action: Any, stop: threading.Event) -> threading.Thread:
    """Watch for the real ``sa-learn --backup`` this process starts, and act on it once."""
    me = os.getpid()

    def watch() -> None:
        while not stop.is_set():
            for p in psutil.Process(me).children(recursive=True):
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                if "--backup" in cmd and any("sa-learn" in c for c in cmd):
                    action(p.pid)
                    return
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def leftovers(root: Path) -> list[str]:
    backups = root / "state" / "bayes-backups"
    return sorted(os.listdir(backups)) if backups.exists() else []


def test_sa_learn_killed_mid_backup_fails_the_job_with_one_event(owner: Owner) -> None:
    before = leftovers(owner.root)
    stop = threading.Event()
    on_sa_learn_backup(lambda pid: os.kill(pid, signal.SIGKILL), stop)
    outcome, events = owner.run()
    stop.set()
    assert outcome.result == "failed", outcome
    assert "sa-learn" in (outcome.error or "") and "-9" in (outcome.error or "")
    failed = [e for e in events if e["event"] == "command_failed"]
    assert len(failed) == 1 and failed[0]["rc"] == -9
    assert [e["event"] for e in events].count("job_failed") == 1
    assert leftovers(owner.root) == before  # no backup, no temp file


def test_sa_learn_hanging_past_its_timeout_is_killed_and_the_job_fails(owner: Owner) -> None:
    stopped: list[int] = []

    def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    stop = threading.Event()
    on_sa_learn_backup(freeze, stop)
    t0 = time.monotonic()
    outcome, events = owner.run(timeout="4s")
    took = time.monotonic() - t0
    stop.set()
    assert stopped, "sa-learn --backup was never seen"
    assert outcome.result == "failed" and "timed out" in (outcome.error or ""), outcome
    assert took < 4 + 15  # the job's timeout, then TERM/KILL of the group: never hung
    assert [e["event"] for e in events].count("job_failed") == 1
    assert not psutil.pid_exists(stopped[0]) or \
        psutil.Process(stopped[0]).status() == psutil.STATUS_ZOMBIE
    assert not [n for n in leftovers(owner.root) if n.endswith(".tmp")]


def test_a_full_disk_under_the_backup_is_one_event_and_no_partial_file(owner: Owner) -> None:
    small = owner.root / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(small)],
                   check=True)
    try:
        (small / "filler").write_bytes(b"x" * (60 * 1024 - 512))  # what is left: a few blocks
        outcome, events = owner.run(backup_dir=str(small))
        assert outcome.result == "failed", outcome
        assert "No space left on device" in (outcome.error or ""), outcome.error
        assert [e["event"] for e in events].count("job_failed") == 1
        assert not [e for e in events if e["event"] == "job_crashed"]  # a clear error, no bug
        assert sorted(os.listdir(small)) == ["filler"]  # nothing half-written, no temp file
    finally:
        subprocess.run(["umount", str(small)], check=False)


NFT_SHIM = """#!/bin/sh
# the real nft, unless the test asks this call to hang (SIGSTOP) or be killed (SIGKILL)
if [ -e "{root}/hang" ] && [ "$1" = "-f" ]; then kill -STOP $$; fi
if [ -e "{root}/kill" ] && [ "$1" = "-f" ]; then kill -KILL $$; fi
exec /usr/sbin/nft "$@"
"""

NFT_CHILD = r"""
import json, sys, time
from pathlib import Path
from structlog.testing import capture_logs
from mailopsd.core.config import parse_config
from mailopsd.core.errors import FirewallError
from mailopsd.firewall import make_backend
root = Path(sys.argv[1])
cfg = parse_config({"binaries": {"nft": str(root / "nft")},
                    "blocker": {"firewall": {"backend": "nftables", "timeout": "2s"}}})
fw = make_backend(cfg)
fw.setup()
out = {}
for fault in ("hang", "kill"):
    (root / fault).touch()
    t0 = time.monotonic()
    with capture_logs() as events:
        try:
            fw.ban("192.0.2.9", 3600)
            out[fault] = "no error"
        except FirewallError as exc:
            out[fault] = str(exc)
    out[fault + "_s"] = time.monotonic() - t0
    out[fault + "_events"] = [e["event"] for e in events]
    (root / fault).unlink()
fw.ban("192.0.2.9", 3600)
out["after"] = sorted(fw.list())
print(json.dumps(out))
"""


def test_nft_hanging_or_killed_is_a_bounded_clear_failure() -> None:
    from tests.support.common import scratch_root

    with scratch_root() as root, Netns("monft") as ns:
        (root / "nft").write_text(NFT_SHIM.format(root=root))
        (root / "nft").chmod(0o755)
        res = ns.run([sys.executable, "-c", NFT_CHILD, str(root)], timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        import json

        out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "timed out" in out["hang"] and out["hang_s"] < 2 + 10
    assert out["hang_events"].count("command_timeout") == 1
    assert "-9" in out["kill"] and out["kill_events"].count("command_failed") == 1
    assert out["after"] == ["192.0.2.9"]  # the next call works: nothing left half-applied
