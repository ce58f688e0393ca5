"""The blocker service's logic with a real follower, policy and store, and an in-memory firewall.

The kernel side is proven by tests/integration/test_blocker_e2e.py; here the backend is a dict,
so the ordering of restore/ban/unban and the following of CLI changes can be checked quickly.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mailopsd.blocker.policy import BanDecision
from mailopsd.blocker.service import BlockerService, create
from mailopsd.blocker.store import BanStore
from mailopsd.core import logs
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.firewall.base import FirewallBackend, canonical_bans


class MemoryFirewall(FirewallBackend):
    """A FirewallBackend that records calls instead of touching the kernel."""

    name = "memory"

    def __init__(self) -> None:
        self.bans: dict[str, float | None] = {}
        self.calls: list[str] = []

    def setup(self) -> None:
        self.calls.append("setup")

    def ban(self, ip: str, timeout: float | None = None) -> None:
        self.calls.append(f"ban {ip}")
        self.bans.update(canonical_bans({ip: timeout}))

    def ban_many(self, bans: Mapping[str, float | None]) -> None:
        self.bans.update(canonical_bans(bans))

    def restore(self, bans: Mapping[str, float | None]) -> None:
        self.calls.append(f"restore {len(bans)}")
        self.bans = canonical_bans(bans)

    def unban(self, ip: str) -> bool:
        self.calls.append(f"unban {ip}")
        return self.bans.pop(ip, 0) != 0

    def list(self) -> set[str]:
        return set(self.bans)

    def flush(self) -> builtins.list[str]:
        self.bans.clear()
        return ["memory"]


def line(ip: str, ts: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} no host name found for IP address {ip}\n"


@pytest.fixture
def events() -> Iterator[Any]:
    """The JSON events logged during the test (structlog reset afterwards)."""
    import io
    import json

    import structlog

    buf = io.StringIO()
    logs.configure("json", "info", stream=buf)
    yield lambda: [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]
    structlog.reset_defaults()


def make(tmp_path: Path, **blocker: Any) -> tuple[BlockerService, MemoryFirewall, Path]:
    mainlog = tmp_path / "mainlog"
    mainlog.touch()
    settings: dict[str, Any] = {
        "mainlog": str(mainlog), "flood": {"enabled": False},
        "firewall": {"check_interval": "50ms"},
        "rules": {"no-rdns": {"maxretry": 3, "findtime": "10m", "bantime": "1h"}}}
    settings.update(blocker)
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "state"),
                                   "run_dir": str(tmp_path / "run")}, "blocker": settings})
    fw = MemoryFirewall()
    return BlockerService(cfg, StateDB(str(tmp_path / "state")), backend=fw), fw, mainlog


def wait(pred: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_create_returns_none_when_disabled(tmp_path: Path) -> None:
    cfg = parse_config({"blocker": {"enabled": False}})
    assert create(cfg, StateDB(str(tmp_path))) is None


def test_log_lines_ban_once_store_and_event(tmp_path: Path, events: Any) -> None:
    svc, fw, mainlog = make(tmp_path)
    svc.start()
    try:
        assert svc.alive()
        with mainlog.open("a") as f:
            f.write(line("192.0.2.7") * 5 + line("198.51.100.1"))
        wait(lambda: "192.0.2.7" in fw.bans)
        assert fw.calls == ["restore 0", "ban 192.0.2.7"]  # 5 lines, one ban
        assert 3590 < (fw.bans["192.0.2.7"] or 0) <= 3600
        ban = BanStore(svc.state).get("192.0.2.7")
        assert ban is not None and (ban.rule, ban.count, ban.active) == ("no-rdns", 3, True)
        ev = [e for e in events() if e["event"] == "ip_banned"]
        assert [(e["ip"], e["rule"], e["count"], e["duration"]) for e in ev] == [
            ("192.0.2.7", "no-rdns", 3, 3600)]
    finally:
        svc.stop(5)
    assert not svc.alive()


def test_replayed_old_lines_do_not_ban(tmp_path: Path, events: Any) -> None:
    svc, fw, _ = make(tmp_path)
    old = time.time() - 7200  # the 1 h ban would be over already
    d = BanDecision("192.0.2.9", "no-rdns", 3, 3600.0, "x", old - 60, old)
    assert svc.apply(d) is None and fw.bans == {}
    assert any(e["event"] == "ban_skipped_expired" for e in events())


def test_start_lifts_expired_and_restores_the_rest_in_one_call(tmp_path: Path,
                                                               events: Any) -> None:
    # ignore_self off: 192.0.2.2 may be one of this machine's own (never banned) addresses
    svc, fw, _ = make(tmp_path, ignore_self=False)
    store = BanStore(svc.state)
    now = time.time()
    store.record("192.0.2.1", "no-rdns", "", count=3, first_seen=0, last_seen=0,
                 expires=now - 1)
    store.record("192.0.2.2", "no-rdns", "", count=3, first_seen=0, last_seen=0,
                 expires=now + 600)
    store.record("2001:db8::/64", "manual", "", count=0, first_seen=0, last_seen=0,
                 expires=None)
    svc.start()
    try:
        assert fw.calls[0] == "restore 2"
        assert set(fw.bans) == {"192.0.2.2", "2001:db8::/64"}
        assert fw.bans["2001:db8::/64"] is None
        unban = [e for e in events() if e["event"] == "ip_unbanned"]
        assert [(e["ip"], e["why"], e["while_stopped"]) for e in unban] == [
            ("192.0.2.1", "expired", True)]
    finally:
        svc.stop(5)


def test_start_lets_go_of_bans_of_addresses_now_ignored(tmp_path: Path, events: Any) -> None:
    svc, fw, _ = make(tmp_path, ignore=["203.0.113.0/28"])
    store = BanStore(svc.state)
    for ip in ("203.0.113.5", "203.0.113.99"):
        store.record(ip, "no-rdns", "", count=3, first_seen=0, last_seen=0,
                     expires=time.time() + 600)
    svc.start()
    try:
        assert set(fw.bans) == {"203.0.113.99"}
        assert [b.ip for b in store.active()] == ["203.0.113.99"]
        unban = [e for e in events() if e["event"] == "ip_unbanned"]
        assert [(e["ip"], e["why"]) for e in unban] == [("203.0.113.5", "ignored")]
    finally:
        svc.stop(5)


def test_expiry_lifts_kernel_store_and_policy(tmp_path: Path, events: Any) -> None:
    # Log stamps have whole seconds and a decision whose ban would already be over is skipped
    # (a replayed old line), so the lines are stamped a second ahead: with a 2 s bantime the
    # ban is only skipped if the service is more than 2 s late, never by rounding.
    svc, fw, mainlog = make(tmp_path, rules={"no-rdns": {"maxretry": 2, "bantime": "2s"}})
    svc.start()
    try:
        with mainlog.open("a") as f:
            f.write(line("192.0.2.7", time.time() + 1) * 2)
        wait(lambda: "192.0.2.7" in fw.bans)
        wait(lambda: "192.0.2.7" not in fw.bans)
        assert not BanStore(svc.state).get("192.0.2.7").active  # type: ignore[union-attr]
        with mainlog.open("a") as f:  # forgotten by the policy: counted afresh, banned again
            f.write(line("192.0.2.7", time.time() + 1) * 2)
        wait(lambda: "192.0.2.7" in fw.bans)
        assert BanStore(svc.state).times_banned("192.0.2.7") == 2
        assert 3.0 < (fw.bans["192.0.2.7"] or 0) <= 4.0  # bantime_factor 2 for the 2nd ban
    finally:
        svc.stop(5)
    assert [e["why"] for e in events() if e["event"] == "ip_unbanned"] == ["expired"]


def test_cli_changes_are_followed_without_touching_the_kernel_again(tmp_path: Path) -> None:
    svc, fw, mainlog = make(tmp_path)
    svc.start()
    try:
        cli = BanStore(svc.state, source="cli", journal=True)
        cli.record("192.0.2.50", "manual", "", count=0, first_seen=0, last_seen=0,
                   expires=None)
        cli.lift(["192.0.2.50"], "cli")
        cli.record("192.0.2.7", "manual", "", count=0, first_seen=0, last_seen=0,
                   expires=None)
        # the CLI journals with its own pid; pretend it was another process
        svc.store._conn().execute("UPDATE ban_changes SET pid = ?", (os.getpid() + 1,))
        wait(lambda: "192.0.2.7" in svc._banned and "192.0.2.50" not in svc._banned)
        with mainlog.open("a") as f:  # banned by hand: the policy does not decide it again
            f.write(line("192.0.2.7") * 4)
        time.sleep(0.3)
        assert [c for c in fw.calls if c.startswith("ban")] == []
        cli.lift_all("flush")
        svc.store._conn().execute("UPDATE ban_changes SET pid = ?", (os.getpid() + 1,))
        wait(lambda: not svc._banned)
        assert fw.calls[-1] == "setup"  # a running daemon keeps its (now empty) chain
    finally:
        svc.stop(5)


def test_flood_samples_become_bans(tmp_path: Path) -> None:
    from collections import namedtuple

    addr = namedtuple("addr", "ip port")
    conn = namedtuple("conn", "laddr raddr status")
    svc, fw, _ = make(tmp_path, flood={"max_connections": 2, "samples": 1, "interval": "50ms"})
    assert svc.flood is not None
    svc.flood.sampler = lambda: [conn(addr("192.0.2.1", 25), addr("::ffff:198.51.100.9", p),
                                      "ESTABLISHED") for p in range(3)]
    svc.start()
    try:
        wait(lambda: "198.51.100.9" in fw.bans)
        ban = BanStore(svc.state).get("198.51.100.9")
        assert ban is not None and (ban.rule, ban.count) == ("flood", 3)
    finally:
        svc.stop(5)


def test_verify_restores_bans_the_firewall_lost(tmp_path: Path, events: Any) -> None:
    svc, fw, _ = make(tmp_path)
    now = time.time()
    for ip in ("192.0.2.1", "192.0.2.2"):
        svc.apply(BanDecision(ip, "no-rdns", 3, 600.0, "x", now, now))
    assert svc.verify(now) == 0 and fw.calls[-1] == "setup"
    fw.bans.clear()  # `systemctl reload nftables` flushed the ruleset
    assert svc.verify(now) == 2
    assert fw.calls[-1] == "restore 2" and set(fw.bans) == {"192.0.2.1", "192.0.2.2"}
    assert [e["count"] for e in events() if e["event"] == "firewall_bans_missing"] == [2]


def test_decisions_are_stored_in_canonical_form_and_bad_ips_refused(tmp_path: Path) -> None:
    svc, fw, _ = make(tmp_path)
    now = time.time()
    assert svc.apply(BanDecision("2001:DB8:0:0::/64", "no-rdns", 3, 60.0, "", now, now))
    assert svc.apply(BanDecision("::ffff:192.0.2.5", "no-rdns", 3, 60.0, "", now, now))
    assert svc.apply(BanDecision("2001:db8::/64", "no-rdns", 3, 60.0, "", now, now)) is None
    assert svc.apply(BanDecision("999.1.1.1", "no-rdns", 3, 60.0, "", now, now)) is None
    assert set(fw.bans) == set(svc._banned) == {"2001:db8::/64", "192.0.2.5"}
    assert BanStore(svc.state).get("2001:db8::/64") is not None


def test_silent_rule_warns_once_a_day_and_again_after_recovering(tmp_path: Path,
                                                                 events: Any) -> None:
    svc, _, _ = make(tmp_path)
    stale = ["no-rdns"]
    svc.policy.stale_rules = lambda now: list(stale)  # type: ignore[method-assign]
    svc._check_silent(1000.0)
    svc._check_silent(2000.0)
    stale.clear()
    svc._check_silent(3000.0)
    stale.append("no-rdns")
    svc._check_silent(4000.0)
    svc._check_silent(4000.0 + 86400)
    warned = [e for e in events() if e["event"] == "rule_silent"]
    assert [(e["rule"], e["level"]) for e in warned] == [("no-rdns", "warning")] * 3
