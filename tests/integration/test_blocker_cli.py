"""``mailopsd bans`` against the real kernel (inside a namespace made here), no daemon running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import scratch_root
from tests.support.daemon import MAILOPSD, write_config
from tests.support.netns import Netns, iptables_bans

pytestmark = pytest.mark.integration


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("mocli") as n:
        yield n


def bans(ns: Netns, cfg: Path, *args: str) -> Any:
    return ns.run([MAILOPSD, "--config", str(cfg), "bans", *args], check=False)


def chain(ns: Netns, v6: bool = False) -> list[str]:
    out = ns.run(["ip6tables-legacy" if v6 else "iptables-legacy", "-S"]).stdout.splitlines()
    return [r for r in out if "mailopsd" in r]


def test_add_list_remove_flush_change_kernel_and_database_together(ns: Netns) -> None:
    with scratch_root() as root:
        cfg = write_config(root, blocker={"enabled": True, "ignore": ["198.51.100.0/24"],
                                          "firewall": {"ports": [25, 587]}})
        try:
            r = bans(ns, cfg, "add", "192.0.2.7", "--duration", "2h", "--reason", "spam run")
            assert r.returncode == 0 and "banned 192.0.2.7 for 2h (iptables)" in r.stdout
            assert bans(ns, cfg, "add", "2001:db8:5::9/64").returncode == 0
            assert iptables_bans(ns) == ["192.0.2.7", "2001:db8:5::/64"]  # set members
            assert "-A INPUT -p tcp -m multiport --dports 25,587 -j mailopsd" in chain(ns)
            assert "-A mailopsd -p tcp -m set --match-set mailopsd-v4 src -j DROP" in chain(ns)
            assert "-A mailopsd -p tcp -m set --match-set mailopsd-v6 src -j DROP" in \
                chain(ns, v6=True)

            listed = json.loads(bans(ns, cfg, "list", "--json").stdout)
            got = {b["ip"]: b for b in listed}
            assert set(got) == {"192.0.2.7", "2001:db8:5::/64"}
            assert got["192.0.2.7"]["rule"] == "manual"
            assert got["192.0.2.7"]["reason"] == "spam run"
            assert 7100 < got["192.0.2.7"]["expires_in"] <= 7200
            assert got["2001:db8:5::/64"]["expires"] is None
            table = bans(ns, cfg, "list").stdout
            assert "192.0.2.7" in table and "permanent" in table
            assert "in 1h59m" in table or "in 2h" in table

            # refusals: ignore-listed, loopback, garbage
            for bad in ("198.51.100.20", "127.0.0.1"):
                r = bans(ns, cfg, "add", bad)
                assert r.returncode == 2 and "ignore list" in r.stderr
            assert bans(ns, cfg, "add", "not-an-ip").returncode == 2
            assert bans(ns, cfg, "add", "192.0.2.8", "-d", "soon").returncode == 2

            r = bans(ns, cfg, "remove", "192.0.2.7", "192.0.2.99")
            assert r.returncode == 1
            assert "unbanned 192.0.2.7 (rule manual" in r.stdout
            assert "192.0.2.99 was not banned" in r.stderr
            assert iptables_bans(ns) == ["2001:db8:5::/64"]

            bans(ns, cfg, "add", "192.0.2.10")
            bans(ns, cfg, "add", "192.0.2.11")
            r = bans(ns, cfg, "remove", "--all")
            assert r.returncode == 0
            assert sorted(ln.split()[1] for ln in r.stdout.splitlines()
                          if ln.startswith("unbanned")) == [
                "192.0.2.10", "192.0.2.11", "2001:db8:5::/64"]
            assert iptables_bans(ns) == []
            history = json.loads(bans(ns, cfg, "list", "--all", "--json").stdout)
            assert {b["lifted_by"] for b in history} == {"cli"}
        finally:
            r = bans(ns, cfg, "flush")
        assert r.returncode == 0, r.stderr
        assert ("removed iptables: chain mailopsd (0 ban rules, the rule matching set "
                "mailopsd-v4)") in r.stdout
        assert "removed ipset: set mailopsd-v6 (0 bans)" in r.stdout
        assert chain(ns) == [] and chain(ns, v6=True) == []
        assert "mailopsd" not in ns.run(["ipset", "list", "-n"]).stdout


def test_flush_removes_both_backends_objects_and_lifts_bans(ns: Netns) -> None:
    with scratch_root() as root:
        nft = write_config(root / "n", blocker={"enabled": True,
                                                "firewall": {"backend": "nftables"}})
        ipt = write_config(root / "i", blocker={"enabled": True})
        try:
            assert bans(ns, nft, "add", "192.0.2.7", "-d", "1h").returncode == 0
            elements = ns.run(["nft", "list", "set", "inet", "mailopsd", "addr4"]).stdout
            assert "192.0.2.7 timeout 1h" in elements
            assert bans(ns, ipt, "add", "192.0.2.8").returncode == 0
        finally:
            r = bans(ns, nft, "flush")
        assert r.returncode == 0, r.stderr
        assert "removed nftables: table inet mailopsd (1 bans)" in r.stdout
        assert ("removed iptables: chain mailopsd (0 ban rules, the rule matching set "
                "mailopsd-v4)") in r.stdout
        assert "removed ipset: set mailopsd-v4 (1 bans)" in r.stdout
        assert "lifted 1 bans" in r.stdout
        assert "mailopsd" not in ns.run(["nft", "list", "ruleset"]).stdout
        assert chain(ns) == []
