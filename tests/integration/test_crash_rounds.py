"""Crash rounds: ``kill -9`` of the real daemon at random moments while bans are being decided
and the mainlog rotates (the real ``logrotate``, Debian's exim4-base stanza), on iptables and
on nftables, each in a network namespace of its own.

Every round writes, in a random order, three no-rdns lines for each of a few "target" addresses
(maxretry 3: each must be banned, exactly once) and two for each of a few "decoys" (must never
be banned): a line counted twice bans a decoy, a line skipped saves a target. The daemon is
killed at a random moment after a random part of the round's lines (while it decides bans),
some lines are written while it is dead, logrotate runs at random moments (also twice while it
is dead), then it is restarted and the rest written. After each restart: the kernel holds
exactly the targets so far, once each; ``bans list --json`` says the same with count 3; no
decoy is banned; every target whose lines straddle the kill is banned. The figures are printed
(``-s``) and recorded in docs/crash-safety.md.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.firewall.nftables import parse_listing
from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, run_cli, write_config
from tests.support.netns import Netns, iptables_bans

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("MAILOPSD_CRASH_ROUNDS", "20"))  # kills per backend
TARGETS, DECOYS = 4, 4
DEBIAN = "daily\nmissingok\nrotate 10\ncompress\ndelaycompress\nnotifempty\nnocreate\n"


class Scene:
    def __init__(self, root: Path, ns: Netns, backend: str) -> None:
        self.root, self.ns, self.backend = root, ns, backend
        (root / "log").mkdir()
        self.log = root / "log" / "mainlog"
        self.conf = root / "logrotate.conf"
        self.conf.write_text(f"{self.log} {{\n{DEBIAN}}}\n")
        self.cfg = write_config(root, blocker={
            "enabled": True, "mainlog": str(self.log), "ignore_self": False,
            "flood": {"enabled": False},
            "firewall": {"backend": backend, "ports": [25], "check_interval": "200ms",
                         "verify_interval": "1s"},
            "rules": {"no-rdns": {"maxretry": 3, "findtime": "30m", "bantime": "1h"}}})
        self.daemon: MailopsdProcess | None = None
        self.rotations = 0

    def start(self) -> None:
        self.daemon = MailopsdProcess(self.cfg, argv=self.ns.argv(
            [MAILOPSD, "--config", str(self.cfg), "run"]))
        self.daemon.wait_event("bans_restored", timeout=60)

    def kill(self) -> None:
        assert self.daemon is not None
        self.trace("KILLED; events:", *(json.dumps(e) for e in self.daemon.events()
                                         if e.get("level") != "debug"))
        self.daemon.signal(signal.SIGKILL)
        self.daemon.proc.wait(timeout=20)
        self.daemon.stop()
        self.daemon = None

    def write(self, line: str) -> None:
        """Exim-like: open by name (nocreate rotation: the next write creates the file)."""
        self.trace(f"WRITE {line[11:19]} {line.split()[-1]}")
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def rotate(self) -> None:
        res = subprocess.run(["logrotate", "-f", "-s", str(self.root / "lr.status"),
                              str(self.conf)], capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode == 0, res.stderr
        self.rotations += 1
        self.trace(f"ROTATED {sorted(os.listdir(self.log.parent))}")

    def kernel(self) -> list[str]:
        """Every ban target in the kernel, once per rule/element (doubles would show twice)."""
        if self.backend == "iptables":
            return iptables_bans(self.ns)
        out = self.ns.run(["nft", "-j", "list", "table", "inet", "mailopsd"], check=False)
        return list(parse_listing(out.stdout)) if out.returncode == 0 else []

    @staticmethod
    def trace(*lines: str) -> None:
        """With MAILOPSD_CRASH_TRACE=FILE, what happened, step by step (for debugging)."""
        if os.environ.get("MAILOPSD_CRASH_TRACE"):
            with open(os.environ["MAILOPSD_CRASH_TRACE"], "a") as f:
                f.write("\n".join(lines) + "\n")

    def diagnose(self) -> str:
        """Saved position, the log files and the daemon's events (for a failure message)."""
        db = sqlite3.connect(self.root / "state" / "state.db")
        pos = db.execute("SELECT ino, offset, size FROM log_positions").fetchall()
        db.close()
        files = {p.name: (p.stat().st_ino, p.stat().st_size) for p in self.log.parent.iterdir()}
        events = self.daemon.events() if self.daemon else []
        tail = "\n".join(json.dumps(e) for e in events
                         if e.get("level") != "debug" and e.get("logger") != "apscheduler")
        return f"positions {pos}\nfiles {files}\n{tail[-6000:]}"

    def listed(self) -> dict[str, int]:
        res = run_cli(self.cfg, "bans", "list", "--json")
        assert res.returncode == 0, res.stderr
        return {b["ip"]: b["count"] for b in json.loads(res.stdout)}


@pytest.fixture(params=["iptables", "nftables"])
def scene(request: pytest.FixtureRequest) -> Iterator[Scene]:
    with scratch_root() as root, Netns("mocr") as ns:
        s = Scene(root, ns, request.param)
        try:
            yield s
        finally:
            if s.daemon is not None:
                s.daemon.stop()


def test_kill_9_at_random_moments_loses_and_doubles_nothing(scene: Scene) -> None:
    seed = int(os.environ.get("MAILOPSD_CRASH_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    banned: set[str] = set()
    decoys: set[str] = set()
    straddled = 0
    base = time.time() - 1500
    clock = itertools.count()
    scene.start()
    for rnd in range(ROUNDS):
        targets = [f"198.51.{100 + rnd}.{i + 1}" for i in range(TARGETS)]
        fools = [f"203.0.{113 + rnd}.{i + 1}" for i in range(DECOYS)]
        ips = [ip for ip in targets for _ in range(3)] + [ip for ip in fools for _ in range(2)]
        rng.shuffle(ips)
        # stamped like Exim's, a second apart, all within findtime (the log's own clock)
        lines = [(ip, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(base + next(clock)))
                  + f" no host name found for IP address {ip}") for ip in ips]
        kill_at = rng.randrange(1, len(lines))
        down_until = rng.randrange(kill_at, len(lines) + 1)
        for i, (_ip, line) in enumerate(lines):
            if i == kill_at:
                time.sleep(rng.uniform(0, 0.15))  # anywhere in the daemon's deciding
                scene.kill()
                if rng.random() < 0.3:
                    scene.rotate()
                    scene.rotate()  # twice while dead: mainlog.2.gz + mainlog.1
            if i == down_until:
                scene.start()
            if rng.random() < 0.08:
                scene.rotate()
            scene.write(line)
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.01))
        if scene.daemon is None:
            scene.start()
        before = {ip for ip, _ in lines[:kill_at]}
        after = {ip for ip, _ in lines[kill_at:]}
        straddled += len(before & after & set(targets))
        banned |= set(targets)
        decoys |= set(fools)
        want = set(banned)
        try:
            wait_until(lambda want=want: set(scene.kernel()) >= want, 30, 0.1, what="the bans")
        except TimeoutError:
            raise AssertionError(f"round {rnd} seed {seed}: not banned "
                                 f"{sorted(banned - set(scene.kernel()))}; kill at {kill_at}, "
                                 f"down until {down_until}\n{scene.diagnose()}") from None
        time.sleep(0.3)  # let a wrongly counted decoy line show, if any
        scene.trace(f"ROUND {rnd} kill {kill_at} down {down_until}")
        kernel = scene.kernel()
        assert len(kernel) == len(set(kernel)), f"doubled in the kernel (seed {seed})"
        assert set(kernel) == banned, \
            f"round {rnd} seed {seed}: {set(kernel) ^ banned}\n{scene.diagnose()}"
        listed = scene.listed()
        assert set(listed) == set(kernel), f"bans list disagrees (seed {seed})"
        assert set(listed.values()) == {3}, f"a ban counted other than 3 hits (seed {seed})"
        assert not decoys & set(kernel)
    assert scene.daemon is not None
    assert not [e for e in scene.daemon.events()
                if e.get("event") in ("log_data_lost", "log_position_lost")]
    print(f"\ncrash rounds [{scene.backend}] seed {seed}: {ROUNDS} kill -9, "
          f"{scene.rotations} logrotate runs, {len(banned)} targets banned exactly once "
          f"({straddled} straddling a kill), {len(decoys)} decoys never banned, "
          f"0 lines counted twice, 0 skipped")
