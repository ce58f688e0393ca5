"""Counts survive restarts and crashes: the blocker service with a real follower, policy, store
and state database, an in-memory firewall; "crash" = a child process killed with SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from mailopsd.blocker import counts
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.store import BanStore
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from tests.unit.test_bans_service import line, make, wait


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_hits_before_a_stop_still_count_after_the_restart(tmp_path: Path) -> None:
    svc, _fw, mainlog = make(tmp_path)  # no-rdns: 3 within 10 min
    svc.start()
    append(mainlog, line("192.0.2.7") * 2)
    wait(lambda: svc.policy.tracked() == 1)
    svc.stop(5)
    svc2, fw2, _ = make(tmp_path)
    svc2.start()
    try:
        assert svc2.policy.counts_of("192.0.2.7")["no-rdns"]
        append(mainlog, line("192.0.2.7"))  # the third: across the restart
        wait(lambda: "192.0.2.7" in fw2.bans)
        ban = BanStore(svc2.state).get("192.0.2.7")
        assert ban is not None and ban.count == 3
    finally:
        svc2.stop(5)


def test_a_line_read_before_the_stop_is_never_applied_again(tmp_path: Path) -> None:
    """Banned, then removed by the admin, then a restart: not banned again by old lines."""
    svc, fw, mainlog = make(tmp_path)
    svc.start()
    append(mainlog, line("192.0.2.8") * 3)
    wait(lambda: "192.0.2.8" in fw.bans)
    BanStore(svc.state, source="cli").lift(["192.0.2.8"], "cli", time.time())
    svc.policy.forget("192.0.2.8")
    svc.stop(5)
    svc2, fw2, _ = make(tmp_path)
    svc2.start()
    try:
        time.sleep(0.3)
        assert "192.0.2.8" not in fw2.bans and svc2.policy.counts_of("192.0.2.8") == {}
    finally:
        svc2.stop(5)


def _child(tmp: str, ready: Any) -> None:
    svc, _, _ = make(Path(tmp))
    svc.start()
    ready.set()
    time.sleep(60)  # killed long before


def test_hits_before_a_kill_9_count_and_none_twice(tmp_path: Path) -> None:
    mainlog = tmp_path / "mainlog"
    mainlog.touch()
    append(mainlog, line("192.0.2.20") * 2 + line("192.0.2.21"))
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_child, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(30)
    conn = StateDB(str(tmp_path / "state")).connect()
    deadline = time.monotonic() + 15
    while conn.execute("SELECT count(*) FROM blocker_counts").fetchone()[0] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    conn.close()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    svc, fw, _ = make(tmp_path)
    svc.start()
    try:
        # exactly two hits for .20 (not four: its lines are not read again) and one for .21
        assert len(svc.policy.counts_of("192.0.2.20")["no-rdns"]) == 2
        assert svc.policy.counts_of("192.0.2.21")["no-rdns"] == [pytest.approx(time.time(),
                                                                               abs=60)]
        append(mainlog, line("192.0.2.20"))
        wait(lambda: "192.0.2.20" in fw.bans)
        assert "192.0.2.21" not in fw.bans
    finally:
        svc.stop(5)


def test_counts_rows_round_trip_and_damaged_rows_are_skipped(tmp_path: Path) -> None:
    cfg = parse_config({"blocker": {"ignore_self": False}}).blocker
    text, newest = counts.encode({"no-rdns": [1.5, 2.0], "auth-failed": [3.25]})
    assert counts.decode(text) == {"auth-failed": [3.25], "no-rdns": [1.5, 2.0]}
    assert newest == 3.25
    conn = StateDB(str(tmp_path)).connect()
    conn.execute("INSERT INTO blocker_counts VALUES ('192.0.2.1', ?, 3.25)", (text,))
    conn.execute("INSERT INTO blocker_counts VALUES ('192.0.2.2', 'no-rdns:x,y', 1)")
    conn.execute("INSERT INTO blocker_counts VALUES ('192.0.2.3', 'gone-rule:1', 1)")
    policy = BanPolicy(cfg, IgnoreList(()))
    assert counts.load(conn, policy) == 2
    assert policy.counts_of("192.0.2.1") == {"no-rdns": [1.5, 2.0], "auth-failed": [3.25]}
    assert policy.counts_of("192.0.2.2") == {} and policy.counts_of("192.0.2.3") == {}
