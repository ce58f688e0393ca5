"""Manual bans, unbans and flushes reach a real journald from the ``bans`` command itself.

The config's logging target is "json" (as when run from a shell): the events still go to
``logging.journal_socket`` because it exists, with IP= (one field per address), EVENT= and
SOURCE=cli, so ``journalctl SOURCE=cli`` and ``journalctl IP=ADDR`` answer "who unbanned X?".
"""

from __future__ import annotations

import pytest

from tests.support.common import scratch_root
from tests.support.daemon import MAILOPSD, write_config
from tests.support.journald import private_journald
from tests.support.netns import Netns

pytestmark = pytest.mark.integration


def test_bans_command_events_are_in_the_journal_with_ip_and_source_cli() -> None:
    with scratch_root() as root, Netns("mojrn") as ns, private_journald() as jd:
        cfg = write_config(root, logging={"target": "json", "journal_socket": jd.socket_path,
                                          "syslog_identifier": "mailopsd"},
                           blocker={"enabled": True, "firewall": {"ipv6": False}})

        def bans(*args: str) -> None:
            r = ns.run([MAILOPSD, "--config", str(cfg), "bans", *args], check=False)
            assert r.returncode == 0, r.stderr

        try:
            bans("add", "192.0.2.31", "-d", "1h", "-r", "spam run")
            bans("add", "192.0.2.31", "-d", "2h", "--update")
            bans("remove", "192.0.2.31")
            bans("add", "192.0.2.32")
            bans("add", "192.0.2.33")
            bans("flush")
        finally:
            ns.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False)
        rows = jd.query("SOURCE=cli", want=5)
        got = [(r["EVENT"], r.get("IP")) for r in rows]
        assert got[:3] == [("ip_banned", "192.0.2.31"), ("ip_banned", "192.0.2.31"),
                           ("ip_unbanned", "192.0.2.31")]
        first = rows[0]
        assert first["RULE"] == "manual" and first["REASON"] == "spam run"
        assert first["SYSLOG_IDENTIFIER"] == "mailopsd" and first["PRIORITY"] == "5"
        flushed = jd.query("EVENT=bans_flushed", "IP=192.0.2.33")
        assert len(flushed) >= 1 and sorted(flushed[0]["IP"]) == ["192.0.2.32", "192.0.2.33"]
        assert flushed[0]["COUNT"] == "2"
