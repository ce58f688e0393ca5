"""The node's outbox (queued decisions survive restarts, are kept a while after being sent for a
failover's re-push) and the sync loop's outage warnings (one, then a rare reminder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailopsd.cluster import outbox as outbox_mod
from mailopsd.cluster import sync as sync_mod
from mailopsd.cluster.outbox import Outbox
from mailopsd.cluster.sync import SyncLoop
from mailopsd.core.config import parse_config
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB


def test_queued_decisions_survive_a_restart_and_are_kept_after_sending(tmp_path: Path) -> None:
    box = Outbox(StateDB(str(tmp_path)), "mx1")
    k1 = box.put("ban", "192.0.2.7", "auth-failed", "5 hits", 5, 1000.0, 4600.0)
    box.put("unban", "192.0.2.8", "", "cli", 0, 1001.0, None)
    box.close()
    again = Outbox(StateDB(str(tmp_path)), "mx1")
    pending = again.pending()
    assert [(q.action, q.ip, q.expires) for q in pending] == [
        ("ban", "192.0.2.7", 4600.0), ("unban", "192.0.2.8", None)]
    assert pending[0].key == k1 and k1.startswith("mx1:")
    again.sent([pending[0].seq], now=2000.0)
    assert again.waiting() == 1
    assert [q.ip for q in again.pending(sent=True)] == ["192.0.2.7", "192.0.2.8"]
    again.sent([pending[1].seq], now=2000.0 + outbox_mod.RETAIN + 1)  # prunes the first
    assert [q.ip for q in again.pending(sent=True)] == ["192.0.2.8"]
    assert again.waiting() == 0


def test_cursor_is_none_until_set(tmp_path: Path) -> None:
    box = Outbox(StateDB(str(tmp_path)), "mx1")
    assert box.cursor("bans") is None
    box.set_cursor("bans", 42)
    box.set_cursor("bans", 43)
    assert box.cursor("bans") == 43


def test_an_outage_gives_one_warning_then_a_rare_reminder(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({"cluster": {"dsn": "postgresql:///x", "node": "mx1"}}).cluster
    assert cfg is not None
    loop = SyncLoop(cfg, Outbox(StateDB(str(tmp_path)), "mx1"), get_logger("cluster"),
                    lambda: None)
    clock = [100.0]
    monkeypatch.setattr(sync_mod.time, "monotonic", lambda: clock[0])
    try:
        with capture_logs() as logs:
            for _ in range(200):  # 200 failed retries, one a second
                loop._down(OSError("connection refused"))
                clock[0] += 1.0
            loop._down(OSError("connection refused"))
            clock[0] += sync_mod.REMIND
            loop._down(OSError("connection refused"))
        names = [e["event"] for e in logs]
        assert names == ["cluster_store_down", "cluster_store_still_down"]
        assert logs[0]["log_level"] == "warning" and logs[0]["queued"] == 0
    finally:
        loop.close()
