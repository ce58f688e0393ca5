"""The blocker's cluster hooks with a recording link and an in-memory firewall: what it
publishes, which remote rows it enforces (its own ignore list wins), unbans that must not lift
a newer ban, and remote hits joining the count only on a local hit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailopsd.blocker.service import BlockerService
from tests.unit.test_bans_service import events as events_fixture
from tests.unit.test_bans_service import make, wait

events = events_fixture  # the JSON-events fixture, shared


@dataclass(frozen=True)
class R:
    id: int
    action: str
    ip: str
    rule: str = "auth-failed"
    reason: str = ""
    hits: int = 5
    decided: float = 0.0
    expires: float | None = None
    node: str = "mx2"


class Link:
    node = "mx1"

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.sink: Any = None

    def attach(self, sink: Any) -> None:
        self.sink = sink

    def detach(self) -> None:
        self.sink = None

    def publish_ban(self, *a: Any) -> None:
        self.sent.append(("ban", *a))

    def publish_unban(self, *a: Any) -> None:
        self.sent.append(("unban", *a))

    def publish_hit(self, *a: Any) -> None:
        self.sent.append(("hit", *a))


def started(tmp_path: Path, **blocker: Any) -> tuple[BlockerService, Any, Path, Link]:
    svc, fw, mainlog = make(tmp_path, ignore=["203.0.113.0/24"], **blocker)
    link = Link()
    svc.bind({"cluster": link})
    svc.start()
    assert link.sink is svc
    return svc, fw, mainlog, link


def line(ip: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} no host name found for IP address {ip}\n"


def test_local_ban_and_its_hits_are_published(tmp_path: Path) -> None:
    svc, fw, mainlog, link = started(tmp_path)
    try:
        with open(mainlog, "a") as fh:
            fh.write(line("192.0.2.7") * 3)
        wait(lambda: "192.0.2.7" in fw.bans)
        wait(lambda: any(s[0] == "ban" for s in link.sent))
        assert [s[0] for s in link.sent] == ["hit", "hit", "hit", "ban"]
        ban = link.sent[-1]
        assert ban[1:4] == ("192.0.2.7", "no-rdns", ban[3]) and ban[4] == 3
    finally:
        svc.stop(5)


def test_remote_rows_obey_this_nodes_ignore_list_and_apply_once(
        tmp_path: Path, events: Any) -> None:
    svc, fw, _mainlog, link = started(tmp_path)
    now = time.time()
    try:
        svc.apply_remote([R(1, "ban", "198.51.100.7", decided=now, expires=now + 3600),
                          R(2, "ban", "198.51.100.7", decided=now, expires=now + 3600),
                          R(3, "ban", "127.0.0.1", decided=now),
                          R(4, "ban", "203.0.113.9", decided=now)])
        assert set(fw.bans) == {"198.51.100.7"}
        refused = {e["ip"] for e in events() if e["event"] == "cluster_row_refused"}
        assert refused == {"127.0.0.1", "203.0.113.9"}
        ban = svc.store.get("198.51.100.7")
        assert ban is not None and ban.origin == "mx2" and ban.times_banned == 1
        assert not [s for s in link.sent if s[0] == "ban"]  # never echoed back
    finally:
        svc.stop(5)


def test_an_unban_never_lifts_a_ban_decided_after_it(tmp_path: Path) -> None:
    svc, fw, _mainlog, _link = started(tmp_path)
    now = time.time()
    try:
        svc.apply_remote([R(1, "ban", "198.51.100.8", decided=now, expires=now + 3600)])
        # an expiry unban of an older ban, delivered late: the newer ban stays
        svc.apply_remote([R(2, "unban", "198.51.100.8", reason="expired", decided=now - 60)])
        assert "198.51.100.8" in fw.bans
        svc.apply_remote([R(3, "unban", "198.51.100.8", reason="cli", decided=now + 1)])
        assert "198.51.100.8" not in fw.bans
        assert not svc.store.get("198.51.100.8").active  # type: ignore[union-attr]
    finally:
        svc.stop(5)


def test_remote_hits_count_only_with_a_hit_in_this_nodes_log(tmp_path: Path) -> None:
    svc, fw, mainlog, link = started(tmp_path)
    now = time.time()
    try:
        svc.remote_hits([("no-rdns", "192.0.2.20", now), ("no-rdns", "192.0.2.20", now)])
        time.sleep(0.3)
        assert "192.0.2.20" not in fw.bans  # other nodes' hits alone decide nothing here
        with open(mainlog, "a") as fh:
            fh.write(line("192.0.2.20"))
        wait(lambda: "192.0.2.20" in fw.bans)
        ban = [s for s in link.sent if s[0] == "ban"][-1]
        assert ban[1] == "192.0.2.20" and ban[4] == 3
    finally:
        svc.stop(5)


def test_a_burst_is_saved_and_enforced_in_one_batch_with_one_event(tmp_path: Path,
                                                                    events: Any) -> None:
    svc, fw, _mainlog, _link = started(tmp_path)
    now = time.time()
    try:
        svc.apply_remote([R(i, "ban", f"198.51.100.{i}", decided=now, expires=now + 60)
                          for i in range(1, 201)])
        assert len(fw.bans) == 200
        assert len(svc.store.active()) == 200
        applied = [e for e in events() if e["event"] == "cluster_bans_applied"]
        assert [e["count"] for e in applied] == [200]
        assert not [e for e in events() if e["event"] == "ip_banned"]
    finally:
        svc.stop(5)
