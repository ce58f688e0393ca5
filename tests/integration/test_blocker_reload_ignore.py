"""A reload that adds an address to ``blocker.ignore`` (in a drop-in) lifts its active ban:
database, kernel (real iptables in a network namespace), an ``ip_unbanned`` event with
``why=ignored``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, write_config
from tests.support.netns import Netns, iptables_bans

pytestmark = pytest.mark.integration


def blocker(mainlog: Path, ignore: list[str]) -> dict[str, object]:
    return {"enabled": True, "mainlog": str(mainlog), "ignore": ignore,
            "flood": {"enabled": False},
            "firewall": {"check_interval": "200ms", "verify_interval": "1s"}}


def test_reload_adding_an_ignored_address_lifts_its_ban() -> None:
    with scratch_root("mailopsd-reload-ignore-") as root, Netns("mori") as ns:
        mainlog = root / "mainlog"
        mainlog.write_text("")
        cfg = write_config(root, blocker=blocker(mainlog, []))

        def rules() -> list[str]:
            return iptables_bans(ns, v6=False)

        def cli(*args: str) -> str:
            return ns.run([MAILOPSD, "--config", str(cfg), "bans", *args]).stdout

        d = MailopsdProcess(cfg, argv=ns.argv([MAILOPSD, "--config", str(cfg), "run"]))
        try:
            d.wait_event("bans_restored", timeout=20)
            cli("add", "192.0.2.60", "-d", "1h")
            cli("add", "192.0.2.61", "-d", "1h")
            wait_until(lambda: len(rules()) == 2, 10, 0.1, what="two bans in the kernel")
            # the office turns out to be 192.0.2.60: the admin adds it to ignore in a drop-in
            # beside the main file, and reloads
            (root / "mailopsd.d").mkdir()
            (root / "mailopsd.d" / "10-office.toml").write_text(
                '[blocker]\nignore = ["192.0.2.60"]\n')
            d.signal(signal.SIGHUP)
            ev = d.wait_event("ip_unbanned", ip="192.0.2.60", timeout=20)
            assert ev["why"] == "ignored"
            d.wait_event("config_reloaded", timeout=20)
            wait_until(lambda: not [r for r in rules() if "192.0.2.60" in r], 10, 0.1,
                       what="the ignored address's ban gone")
            assert [r for r in rules() if "192.0.2.61" in r]  # the other ban stays
            assert "192.0.2.60" not in cli("list")
        finally:
            d.stop()
            ns.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False)
