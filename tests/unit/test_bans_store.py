"""The bans table: renewals, repeat offenders, expiry, history and the CLI change feed."""

from __future__ import annotations

import os
from pathlib import Path

from mailopsd.blocker.store import BanStore
from mailopsd.core.state import StateDB


def _store(tmp_path: Path, **kw: object) -> BanStore:
    return BanStore(StateDB(str(tmp_path / "state")), **kw)  # type: ignore[arg-type]


def test_record_then_renew_keeps_banned_at_and_count_of_bans(tmp_path: Path) -> None:
    s = _store(tmp_path)
    b = s.record("192.0.2.7", "no-rdns", "11 hits", count=11, first_seen=10.0, last_seen=20.0,
                 expires=3620.0, now=20.0)
    assert (b.active, b.times_banned, b.banned_at, b.duration) == (True, 1, 20.0, 3600.0)
    b = s.record("192.0.2.7", "auth-failed", "5 hits", count=5, first_seen=30.0,
                 last_seen=40.0, expires=None, now=40.0)
    assert (b.rule, b.times_banned, b.banned_at, b.expires) == ("auth-failed", 1, 20.0, None)
    assert [x.ip for x in s.active()] == ["192.0.2.7"]


def test_lift_keeps_history_and_next_ban_counts_again(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.record("192.0.2.7", "no-rdns", "", count=11, first_seen=0, last_seen=0, expires=100.0,
             now=0.0)
    assert s.times_banned("192.0.2.7") == 1 and s.times_banned("192.0.2.8") == 0
    lifted = s.lift(["192.0.2.7", "192.0.2.8"], "expired", now=100.0)
    assert [b.ip for b in lifted] == ["192.0.2.7"] and lifted[0].active
    assert s.active() == []
    old = s.history()[0]
    assert (old.active, old.lifted_by, old.lifted_at) == (False, "expired", 100.0)
    assert s.lift(["192.0.2.7"], "cli") == []  # already lifted: nothing to do
    again = s.record("192.0.2.7", "no-rdns", "", count=11, first_seen=200, last_seen=200,
                     expires=None, now=200.0)
    assert (again.times_banned, again.banned_at, again.lifted_by) == (2, 200.0, None)


def test_due_returns_only_expired_active_bans(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for ip, exp in (("192.0.2.1", 50.0), ("192.0.2.2", 150.0), ("192.0.2.3", None)):
        s.record(ip, "r", "", count=1, first_seen=0, last_seen=0, expires=exp, now=0.0)
    assert [b.ip for b in s.due(100.0)] == ["192.0.2.1"]
    assert [b.ip for b in s.due(1e12)] == ["192.0.2.1", "192.0.2.2"]
    assert s.get("192.0.2.3") is not None and s.get("192.0.2.3").remaining(1e12) is None  # type: ignore[union-attr]


def test_lift_all_empties_active(tmp_path: Path) -> None:
    s = _store(tmp_path)
    for i in range(3):
        s.record(f"192.0.2.{i}", "r", "", count=1, first_seen=0, last_seen=0, expires=None)
    assert len(s.lift_all("flush")) == 3
    assert s.active() == [] and {b.lifted_by for b in s.history()} == {"flush"}


def test_cli_changes_are_journaled_for_other_processes_only(tmp_path: Path) -> None:
    daemon = _store(tmp_path)
    cli = _store(tmp_path, source="cli", journal=True)
    start = daemon.last_change()
    daemon.record("192.0.2.1", "no-rdns", "", count=1, first_seen=0, last_seen=0, expires=None)
    assert daemon.last_change() == start  # the daemon's own bans are not journaled
    cli.record("192.0.2.9", "manual", "x", count=0, first_seen=0, last_seen=0, expires=99.0)
    cli.lift(["192.0.2.9"], "cli")
    cli.lift_all("flush")
    # same pid here: the feed hides one's own changes, so read it as another process would
    rows = daemon._conn().execute("SELECT action, ip, pid FROM ban_changes ORDER BY seq")
    assert [(r[0], r[1]) for r in rows] == [("ban", "192.0.2.9"), ("unban", "192.0.2.9"),
                                            ("flush", "")]
    assert daemon.changes_since(start) == []
    daemon._conn().execute("UPDATE ban_changes SET pid = ?", (os.getpid() + 1,))
    feed = daemon.changes_since(start)
    assert [(c.action, c.ip, c.expires) for c in feed] == [
        ("ban", "192.0.2.9", 99.0), ("unban", "192.0.2.9", None), ("flush", "", None)]
    assert daemon.changes_since(feed[-1].seq) == []


def test_prune_forgets_old_lifted_bans_and_changes(tmp_path: Path) -> None:
    s = _store(tmp_path, source="cli", journal=True)
    s.record("192.0.2.1", "r", "", count=1, first_seen=0, last_seen=0, expires=None, now=10.0)
    s.record("192.0.2.2", "r", "", count=1, first_seen=0, last_seen=0, expires=None, now=10.0)
    s.lift(["192.0.2.1"], "cli", now=20.0)
    assert s.prune(older_than=30.0) == 1 + 3
    assert s.get("192.0.2.1") is None and s.get("192.0.2.2") is not None
