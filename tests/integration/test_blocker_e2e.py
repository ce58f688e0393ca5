"""End to end: a real Exim writes the lines, a real ``mailopsd run`` bans, real packets prove it.

Layout (all namespaces made here; the daemon and Exim run inside ``server``)::

    bad  192.0.2.2   ---- veth ----  server 192.0.2.1      Exim :25, plain listener :2626
    good 198.51.100.2 --- veth ----  server 198.51.100.1   Exim :25

Every TCP connection from a client makes Exim log "no host name found for IP address X" (the
namespaces have no names), which is exactly what the seed's ip-block.pl counted.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, run_cli, write_config
from tests.support.exim import PrivateExim
from tests.support.netns import Netns, iptables_bans, tcp_connect, tcp_probe, veth_pair

pytestmark = pytest.mark.integration

OTHER = 2626
HOLD = r"""
import socket, sys, time
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
         for _ in range(int(sys.argv[3]))]
print("open", flush=True)
time.sleep(120)
"""
LISTEN = r"""
import socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); time.sleep(600)
"""


@dataclass
class Lab:
    root: Path
    server: Netns
    bad: Netns
    good: Netns

    def rules(self) -> list[str]:
        """Our rules (``iptables-legacy -S``) and our bans, as ``ban IP`` lines."""
        out = self.server.run(["iptables-legacy", "-S"]).stdout.splitlines()
        return [r for r in out if "mailopsd" in r] + [
            f"ban {ip}" for ip in iptables_bans(self.server, v6=False)]

    def cli(self, cfg: Path, *args: str, check: bool = True) -> Any:
        """``mailopsd bans ...`` inside the server namespace (it changes the kernel there)."""
        return self.server.run([MAILOPSD, "--config", str(cfg), "bans", *args], check=check)

    def daemon(self, cfg: Path) -> MailopsdProcess:
        return MailopsdProcess(cfg, argv=self.server.argv([MAILOPSD, "--config", str(cfg),
                                                           "run"]))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with scratch_root() as root, Netns("mobl") as server, Netns("mobl") as bad, \
            Netns("mobl") as good:
        veth_pair(server, bad, "192.0.2.1/26", "192.0.2.2/26")
        veth_pair(server, good, "198.51.100.1/26", "198.51.100.2/26")
        server.popen([sys.executable, "-c", LISTEN, "192.0.2.1", str(OTHER)])
        yield Lab(root, server, bad, good)


def config(lab: Lab, name: str, exim: PrivateExim, **blocker: Any) -> Path:
    settings: dict[str, Any] = {"enabled": True, "mainlog": str(exim.mainlog),
                                "firewall": {"ports": [25], "check_interval": "200ms",
                                             "verify_interval": "1s"}}
    settings.update(blocker)
    return write_config(lab.root / name, blocker=settings)


@pytest.fixture
def exim(lab: Lab) -> Iterator[PrivateExim]:
    root = lab.root / f"exim-{time.monotonic_ns()}"
    root.mkdir(mode=0o755)
    with PrivateExim(root, listen=["192.0.2.1", "198.51.100.1"], port=25,
                     netns=lab.server) as ex:
        yield ex


def test_abusive_client_banned_then_kill_9_restart_keeps_identical_rules(
        lab: Lab, exim: PrivateExim) -> None:
    # counts survive restarts (issue 13): the good client's three connections, one after the
    # restart, would add up to a ban of their own; it stands for a client with rDNS here
    cfg = config(lab, "e2e", exim, flood={"enabled": False}, ignore=["198.51.100.2"],
                 rules={"no-rdns": {"maxretry": 3, "findtime": "5m", "bantime": "1h"}})
    d1 = lab.daemon(cfg)
    try:
        d1.wait_event("bans_restored", timeout=15)
        assert tcp_connect(lab.good, "198.51.100.1", 25)
        for _ in range(3):
            assert tcp_connect(lab.bad, "192.0.2.1", 25)
        ev = d1.wait_event("ip_banned", ip="192.0.2.2", timeout=10)
        assert (ev["rule"], ev["count"], ev["duration"]) == ("no-rdns", 3, 3600)
        # the kernel says so, and packets agree
        assert "ban 192.0.2.2" in lab.rules()  # a member of the set mailopsd-v4
        assert "-A mailopsd -p tcp -m set --match-set mailopsd-v4 src -j DROP" in lab.rules()
        assert "-A INPUT -p tcp -m multiport --dports 25 -j mailopsd" in lab.rules()
        assert tcp_probe(lab.bad, "192.0.2.1", 25, timeout=0.6) == "timeout"
        assert tcp_probe(lab.bad, "192.0.2.1", OTHER, timeout=2) == "connected"
        assert tcp_connect(lab.good, "198.51.100.1", 25)
        listed = run_cli(cfg, "bans", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"ip": "192.0.2.2"' in listed.stdout and '"rule": "no-rdns"' in listed.stdout

        # a manual ban from the CLI while the daemon runs: the daemon lifts it on expiry
        assert "banned 192.0.2.40 for 2s" in lab.cli(cfg, "add", "192.0.2.40", "-d", "2s").stdout
        assert "ban 192.0.2.40" in lab.rules()
        d1.wait_event("ip_unbanned", ip="192.0.2.40", why="expired", timeout=8)
        assert not [r for r in lab.rules() if "192.0.2.40" in r]

        # one ban that will expire while the daemon is dead, one that will not
        lab.cli(cfg, "add", "192.0.2.41", "-d", "2s")
        added = time.time()
        lab.cli(cfg, "add", "192.0.2.42", "-d", "1h")
        before = lab.rules()
        d1.signal(signal.SIGKILL)
        d1.proc.wait(timeout=10)
    finally:
        d1.stop()
    # bans stay in the kernel while the daemon is dead (iptables has no timeouts)
    assert lab.rules() == before
    wait_until(lambda: time.time() > added + 2.2, 5, 0.1, what="the 2 s ban to run out")
    d2 = lab.daemon(cfg)
    try:
        ev = d2.wait_event("bans_restored", timeout=15)
        assert (ev["count"], ev["expired"]) == (2, 1)
        d2.wait_event("ip_unbanned", ip="192.0.2.41", while_stopped=True)
        after = lab.rules()
        assert after == [r for r in before if "192.0.2.41" not in r]
        assert len(after) == len(set(after))
        assert tcp_probe(lab.bad, "192.0.2.1", 25, timeout=0.6) == "timeout"
        assert tcp_connect(lab.good, "198.51.100.1", 25)
        # the follower resumed where it stopped: no line counted twice, no second ban
        assert not [e for e in d2.events() if e.get("event") == "ip_banned"]
        # someone flushes our chain by hand (the set rule goes, the members stay but match
        # nothing): the daemon notices the lost bans and puts them back
        lab.server.run(["iptables-legacy", "-F", "mailopsd"])
        d2.wait_event("firewall_bans_missing", count=2, timeout=5)
        wait_until(lambda: lab.rules() == after, 5, 0.1, what="bans restored after a flush")
        removed = lab.cli(cfg, "remove", "192.0.2.2")
        assert "unbanned 192.0.2.2 (rule no-rdns" in removed.stdout
        d2.wait_event("bans_changed_outside", timeout=5)
        assert tcp_connect(lab.bad, "192.0.2.1", 25)
    finally:
        d2.stop()
        lab.cli(cfg, "flush", check=False)
    assert lab.rules() == []


def test_connection_flood_is_banned_from_psutil_samples(lab: Lab, exim: PrivateExim) -> None:
    cfg = config(lab, "flood", exim, rules={"no-rdns": {"enabled": False}},
                 flood={"max_connections": 4, "interval": "300ms", "samples": 2,
                        "bantime": "10m"})
    d = lab.daemon(cfg)
    holder = None
    try:
        d.wait_event("bans_restored", timeout=15)
        holder = lab.bad.popen([sys.executable, "-c", HOLD, "192.0.2.1", "25", "6"],
                               stdout=-1)
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        ev = d.wait_event("ip_banned", ip="192.0.2.2", timeout=10)
        assert ev["rule"] == "flood" and ev["count"] >= 5 and ev["duration"] == 600
        assert tcp_probe(lab.bad, "192.0.2.1", 25, timeout=0.6) == "timeout"
        assert tcp_connect(lab.good, "198.51.100.1", 25)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait(timeout=5)
        d.stop()
        lab.cli(cfg, "flush", check=False)
    assert lab.rules() == []
