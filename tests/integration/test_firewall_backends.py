"""Both firewall backends against the real kernel, inside namespaces made here, proven by packets.

Backend code runs inside the server namespace (``ip netns exec NS python -c DRIVER``), never in
the host's: DRIVER applies a list of operations and prints their results as JSON. Rules are read
back with ``iptables-legacy -S`` / ``nft``, and blocking is proven with real TCP connects from two
client namespaces (one banned, one not) to a banned port and to a port that is not closed.
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
                     ["ban", "2001:db8::2"], ["list"])
        assert res[-1] == ["192.0.2.2", "2001:db8::2"]
        rules = lab.legacy()
        assert "-A INPUT -p tcp -m multiport --dports 25,465 -j mailopsd" in rules
        assert [r for r in rules if r.startswith("-A mailopsd")] == [
            "-A mailopsd -s 192.0.2.2/32 -p tcp -j DROP"]  # banned twice, one rule
        assert sum(r.endswith("-j mailopsd") for r in rules) == 1  # setup twice, one jump
        assert "-A mailopsd -s 2001:db8::2/128 -p tcp -j DROP" in lab.legacy(v6=True)
        # nft's iptables sees only the warning: python-iptables wrote the legacy tables
        assert "iptables-legacy tables present" in lab.server.run(["iptables", "-S"]).stderr + \
            lab.server.run(["iptables", "-S"]).stdout
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "timeout"
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"
        assert lab.probe(lab.bad, "192.0.2.1", OTHER) == "connected"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "connected"

        assert lab.fw(cfg, ["unban", "192.0.2.2"], ["unban", "192.0.2.2"]) == [True, False]
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"
        assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "timeout"
    finally:
        removed = lab.fw(cfg, ["flush"])[0]
    assert "iptables: chain mailopsd (0 ban rules)" in removed
    assert "ip6tables: chain mailopsd (1 ban rules)" in removed
    assert not [r for r in lab.legacy() + lab.legacy(v6=True) if "mailopsd" in r]
    assert lab.probe(lab.bad, "2001:db8::1", SMTP) == "connected"


def test_iptables_reject_and_restore_in_one_commit_without_duplicates(lab: Lab) -> None:
    cfg = {"backend": "iptables", "ports": [SMTP], "action": "reject", "iptables_chain": "mo_t"}
    bans = {f"10.{i // 65536}.{i // 256 % 256}.{i % 256}": None for i in range(10_000)}
    bans["192.0.2.2"] = 60.0
    try:
        t0 = time.monotonic()
        lab.fw(cfg, ["restore", bans], ["restore", bans], ["ban_many", {"192.0.2.2": None}])
        took = time.monotonic() - t0
        rules = [r for r in lab.legacy() if r.startswith("-A mo_t")]
        assert len(rules) == len(set(rules)) == 10_001
        assert "-A mo_t -s 192.0.2.2/32 -p tcp -j REJECT --reject-with tcp-reset" in rules
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "refused"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "connected"
        assert took < 20, f"two 10k restores took {took:.1f}s"
        # a restore of a smaller set removes what is no longer banned, in the same commit
        assert lab.fw(cfg, ["restore", {"198.51.100.2": None}], ["list"])[1] == ["198.51.100.2"]
        assert lab.probe(lab.bad, "192.0.2.1", SMTP) == "connected"
        assert lab.probe(lab.good, "198.51.100.1", SMTP) == "refused"
    finally:
        lab.fw(cfg, ["flush"])
    assert not [r for r in lab.legacy() if "mo_t" in r]


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
