"""Both firewall backends against the real kernel, inside namespaces made here, proven by packets.

Backend code runs inside the server namespace (``ip netns exec NS python -c DRIVER``), never in
the host's: DRIVER applies a list of operations and prints their results as JSON. Rules are read
back with ``iptables-legacy -S``, ``ipset save`` and ``nft``, and blocking is proven with real TCP
connects from two client namespaces (one banned, one not) to a banned port and to a port that is
not closed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.common import wait_until
from tests.support.netns import Netns, tcp_probe, veth_pair

pytestmark = pytest.mark.integration

DRIVER = r"""
import json, sys
from mailopsd.core import logs
from mailopsd.core.config.schema_firewall import FirewallConfig
from mailopsd.firewall.iptables import IptablesBackend
from mailopsd.firewall.nftables import NftablesBackend
logs.configure("json", "warning", stream=sys.stderr)
req = json.load(sys.stdin)
cfg = FirewallConfig(**{k: tuple(v) if isinstance(v, list) else v
                        for k, v in req["config"].items()})
b = NftablesBackend(cfg) if cfg.backend == "nftables" else IptablesBackend(cfg)
out = []
for op, *args in req["ops"]:
    res = getattr(b, op)(*args)
    out.append(sorted(res) if isinstance(res, set) else res)
print(json.dumps(out))
"""

LISTENER = r"""
import socket, sys, time
socks = []
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    socks.append(s)
time.sleep(600)
"""

SMTP, OTHER = 25, 2626


@dataclass
class Lab:
    server: Netns
    bad: Netns   # 192.0.2.2 / 2001:db8::2
    good: Netns  # 198.51.100.2

    def fw(self, config: dict[str, Any], *ops: list[Any]) -> list[Any]:
        """Run backend operations inside the server namespace; returns their results."""
        req = json.dumps({"config": config, "ops": list(ops)}).encode()
        res = self.server.run([sys.executable, "-c", DRIVER], input=req, timeout=60)
        return list(json.loads(res.stdout.splitlines()[-1]))

    def legacy(self, v6: bool = False) -> list[str]:
        cmd = "ip6tables-legacy" if v6 else "iptables-legacy"
        return self.server.run([cmd, "-S"]).stdout.splitlines()

    def members(self, name: str) -> list[str] | None:
        """``ipset save NAME``'s members, or None if there is no such set."""
        r = self.server.run(["ipset", "save", name], check=False)
        if r.returncode:
            return None
        return sorted(ln.split()[2] for ln in r.stdout.splitlines() if ln.startswith("add "))

    def probe(self, who: Netns, host: str, port: int) -> str:
        return tcp_probe(who, host, port, timeout=0.6)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Netns("mofw") as server, Netns("mofw") as bad, Netns("mofw") as good:
        veth_pair(server, bad, "192.0.2.1/26", "192.0.2.2/26", "2001:db8::1/64",
                  "2001:db8::2/64")
        veth_pair(server, good, "198.51.100.1/26", "198.51.100.2/26")
        specs = [f"{h}:{p}" for h in ("192.0.2.1", "198.51.100.1", "2001:db8::1")
                 for p in (SMTP, OTHER)]
        server.popen([sys.executable, "-c", LISTENER, *specs])
        wait_until(lambda: len([ln for ln in server.run(["ss", "-Hltn"]).stdout.splitlines()
                                if ln.strip()]) >= 6, 10, what="test listeners")
        yield Lab(server, bad, good)


def test_iptables_ban_blocks_only_the_banned_client_on_smtp(lab: Lab) -> None:
    cfg = {"backend": "iptables", "ports": [SMTP, 465]}
    try:
        res = lab.fw(cfg, ["setup"], ["setup"], ["ban", "192.0.2.2"], ["ban", "192.0.2.2"],
                     ["ban", "2001:db8::2"], ["ban_many", {"2001:db8:7::/64": None}], ["list"])
        assert res[-1] == ["192.0.2.2", "2001:db8:7::/64", "2001:db8::2"]
        rules = lab.legacy()
        assert "-A INPUT -p tcp -m multiport --dports 25,465 -j mailopsd" in rules
        # one rule per family matches the set; bans are members, never rules
        assert [r for r in rules if r.startswith("-A mailopsd")] == [
            "-A mailopsd -p tcp -m set --match-set mailopsd-v4 src -j DROP"]
        assert sum(r.endswith("-j mailopsd") for r in rules) == 1  # setup twice, one jump
        assert "-A mailopsd -p tcp -m set --match-set mailopsd-v6 src -j DROP" in \
            lab.legacy(v6=True)
        assert lab.members("mailopsd-v4") == ["192.0.2.2"]  # banned twice, one member
        assert lab.members("mailopsd-v6") == ["2001:db8:7::/64", "2001:db8::2"]
        header = lab.server.run(["ipset", "list", "-t", "mailopsd-v6"]).stdout
        assert "Type: hash:net" in header and "family inet6" in header
        assert "maxelem 1048576" in header and "timeout" not in header  # mailopsd lifts bans
        # nft's iptables sees only the warning: python-iptables wrote the legacy tables
        assert "iptables-legacy tables present" in lab.server.run(["iptables", "-S"]).stderr + \
            lab.server.run(["iptables", "-S"]).stdout
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"
        assert lab.probe(lab.bad, "192.0.2.1", OTHER) == "connected"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "connected"

        assert lab.fw(cfg, ["unban", "192.0.2.2"], ["unban", "192.0.2.2"]) == [True, False]
        assert lab.members("mailopsd-v4") == []
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"
    finally:
        removed = lab.fw(cfg, ["flush"])[0]
    assert "iptables: chain mailopsd (0 ban rules, the rule matching set mailopsd-v4)" \
        in removed
    assert "ipset: set mailopsd-v4 (0 bans)" in removed
    assert "ipset: set mailopsd-v6 (2 bans)" in removed
    assert not [r for r in lab.legacy() + lab.legacy(v6=True) if "mailopsd" in r]
    assert lab.members("mailopsd-v4") is None and lab.members("mailopsd-v6") is None
    assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "connected"


def test_iptables_reject_and_restore_in_one_commit_without_duplicates(lab: Lab) -> None:
    cfg = {"backend": "iptables", "ports": [SMTP], "action": "reject", "iptables_chain": "mo_t"}
    bans = {f"10.{i // 65536}.{i // 256 % 256}.{i % 256}": None for i in range(10_000)}
    bans["192.0.2.2"] = 60.0
    try:
        t0 = time.monotonic()
        lab.fw(cfg, ["restore", bans], ["restore", bans], ["ban_many", {"192.0.2.2": None}])
        took = time.monotonic() - t0
        assert [r for r in lab.legacy() if r.startswith("-A mo_t")] == [
            "-A mo_t -p tcp -m set --match-set mo_t-v4 src -j REJECT --reject-with tcp-reset"]
        held = lab.members("mo_t-v4")
        assert held is not None and len(held) == 10_001 and "192.0.2.2" in held
        assert lab.members("mo_t-n4") is None  # restore's fresh set was swapped in and gone
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "refused"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "connected"
        assert took < 20, f"two 10k restores took {took:.1f}s"
        # a restore of a smaller set removes what is no longer banned, in the same swap
        assert lab.fw(cfg, ["restore", {"198.51.100.2": None}], ["list"])[1] == ["198.51.100.2"]
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "refused"
        # the action changes: setup swaps the set rule, members stay
        lab.fw({**cfg, "action": "drop"}, ["setup"])
        assert [r for r in lab.legacy() if r.startswith("-A mo_t")] == [
            "-A mo_t -p tcp -m set --match-set mo_t-v4 src -j DROP"]
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "timeout"
    finally:
        lab.fw(cfg, ["flush"])
    assert not [r for r in lab.legacy() if "mo_t" in r]
    assert lab.members("mo_t-v4") is None


def test_iptables_set_flushed_chain_and_strays_are_seen_as_the_kernel_has_them(lab: Lab) -> None:
    cfg = {"backend": "iptables", "ports": [SMTP], "iptables_chain": "mo_k", "ipv6": False}
    try:
        assert lab.fw(cfg, ["restore", {"192.0.2.2": None, "203.0.113.0/24": None}],
                      ["list"])[-1] == ["192.0.2.2", "203.0.113.0/24"]
        # an admin's own rule in our chain, and a member added behind our back, both count
        lab.server.run(["iptables-legacy", "-A", "mo_k", "-s", "198.51.100.9/32", "-p", "tcp",
                        "-j", "DROP"])
        lab.server.run(["ipset", "add", "mo_k-v4", "198.51.100.8"])
        assert lab.fw(cfg, ["list"])[0] == ["192.0.2.2", "198.51.100.8", "198.51.100.9",
                                            "203.0.113.0/24"]
        assert lab.fw(cfg, ["unban", "198.51.100.9"], ["unban", "198.51.100.8"]) == [True, True]
        assert not [r for r in lab.legacy() if "198.51.100.9" in r]
        # `iptables-legacy -F` drops the set rule: the members block nothing, so the kernel
        # holds none of them (the daemon's check then restores), and setup brings the rule back
        lab.server.run(["iptables-legacy", "-F", "mo_k"])
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"
        assert lab.fw(cfg, ["list"], ["setup"], ["list"]) == [
            [], None, ["192.0.2.2", "203.0.113.0/24"]]
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
        # the set destroyed too (after -F nothing references it): a ban makes it again
        lab.server.run(["iptables-legacy", "-F", "mo_k"])
        lab.server.run(["ipset", "destroy", "mo_k-v4"])
        assert lab.fw(cfg, ["ban", "192.0.2.2"], ["list"])[-1] == ["192.0.2.2"]
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
    finally:
        lab.fw(cfg, ["flush"])
    assert lab.members("mo_k-v4") is None


def test_iptables_set_of_another_kind_is_a_clear_error(lab: Lab) -> None:
    cfg = {"backend": "iptables", "ports": [SMTP], "iptables_chain": "mo_x", "ipv6": False}
    lab.server.run(["ipset", "create", "mo_x-v4", "hash:ip"])
    try:
        req = json.dumps({"config": cfg, "ops": [["setup"]]}).encode()
        res = lab.server.run([sys.executable, "-c", DRIVER], input=req, check=False)
        assert res.returncode != 0
        assert "FirewallError: ipset mo_x-v4 exists but is not a hash:net set" in res.stderr
    finally:
        lab.server.run(["ipset", "destroy", "mo_x-v4"], check=False)
        lab.fw(cfg, ["flush"])


def test_iptables_rule_per_ban_layout_and_the_switch_to_sets(lab: Lab) -> None:
    rules_cfg = {"backend": "iptables", "ports": [SMTP], "iptables_chain": "mo_r",
                 "iptables_set": False}
    set_cfg = {**rules_cfg, "iptables_set": True}
    try:
        lab.fw(rules_cfg, ["setup"], ["ban", "192.0.2.2"], ["ban", "192.0.2.2"],
               ["ban", "2001:db8::2"])
        assert [r for r in lab.legacy() if r.startswith("-A mo_r")] == [
            "-A mo_r -s 192.0.2.2/32 -p tcp -j DROP"]
        assert "-A mo_r -s 2001:db8::2/128 -p tcp -j DROP" in lab.legacy(v6=True)
        assert lab.members("mo_r-v4") is None  # no set in this layout
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
        # upgrade: until the restore the old rules count; the restore moves them to the sets
        assert lab.fw(set_cfg, ["list"])[0] == ["192.0.2.2", "2001:db8::2"]
        lab.fw(set_cfg, ["restore", {"192.0.2.2": None, "2001:db8::2": None}])
        assert [r for r in lab.legacy() if r.startswith("-A mo_r")] == [
            "-A mo_r -p tcp -m set --match-set mo_r-v4 src -j DROP"]
        assert lab.members("mo_r-v6") == ["2001:db8::2"]
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"
        # and back: a restore in the rule layout empties the chain of the set rule
        lab.fw(rules_cfg, ["restore", {"192.0.2.2": None}])
        assert [r for r in lab.legacy() if r.startswith("-A mo_r")] == [
            "-A mo_r -s 192.0.2.2/32 -p tcp -j DROP"]
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "connected"
    finally:
        removed = lab.fw(rules_cfg, ["flush"])[0]
    # teardown in either layout destroys sets left by the other
    assert "ipset: set mo_r-v6 (1 bans)" in removed
    assert lab.members("mo_r-v4") is None


def nft_table(lab: Lab) -> str:
    return lab.server.run(["nft", "list", "table", "inet", "mo_nft"], check=False).stdout


def test_nftables_sets_bulk_load_expire_in_the_kernel_and_flush(lab: Lab) -> None:
    cfg = {"backend": "nftables", "ports": [SMTP, 587], "nftables_table": "mo_nft"}
    bulk = {f"10.{i // 65536}.{i // 256 % 256}.{i % 256}": 3600.0 for i in range(10_000)}
    bulk["2001:db8::/64"] = None
    try:
        res = lab.fw(cfg, ["setup"], ["restore", bulk], ["setup"], ["list"])
        assert len(res[-1]) == 10_001  # setup again kept the elements
        assert "tcp dport { 25, 587 } ip6 saddr @net6 drop" in nft_table(lab)
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"

        # a 2 s element vanishes in the kernel by itself: no daemon involved
        lab.fw(cfg, ["ban", "192.0.2.2", 2.0])
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
        assert lab.probe(lab.bad, "192.0.2.1", OTHER) == "connected"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "connected"
        wait_until(lambda: "192.0.2.2" not in nft_table(lab), 5, 0.2, what="kernel expiry")
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"

        # re-ban replaces the timeout; unban of an expired element is not an error
        left = lab.fw(cfg, ["ban", "192.0.2.2", 5.0], ["ban", "192.0.2.2", 900.0],
                      ["list_timeouts"])[-1]
        assert 890 <= left["192.0.2.2"] <= 900
        assert lab.fw(cfg, ["unban", "192.0.2.2"], ["unban", "192.0.2.2"]) == [True, False]
    finally:
        removed = lab.fw(cfg, ["flush"], ["flush"], ["list"])
    assert removed[0] == ["nftables: table inet mo_nft (10001 bans)"]
    assert removed[1:] == [[], []]
    assert "mo_nft" not in lab.server.run(["nft", "list", "tables"]).stdout
    assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "connected"
