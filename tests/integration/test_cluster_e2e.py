"""Three real ``mailopsd run`` daemons in three network namespaces (own firewall, own mainlog)
sharing one real PostgreSQL 15: propagation of bans and unbans to every kernel, ``bans list``
origins, cross-node counting, expiry, a node away catching up, the store stopped and back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, write_config
from tests.support.netns import Netns, iptables_bans
from tests.support.postgres import PrivatePostgres

pytestmark = pytest.mark.integration
psycopg = pytest.importorskip("psycopg")
NAMES = ("mx1", "mx2", "mx3")


def auth_failed(ip: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return (f"{stamp} plain_server authenticator failed for (x) [{ip}]: 535 Incorrect "
            "authentication data (set_id=alice)\n")


@dataclass
class Mx:
    name: str
    ns: Netns
    cfg: Path
    mainlog: Path
    daemon: MailopsdProcess | None = None
    marks: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.daemon = MailopsdProcess(self.cfg, argv=self.ns.argv(
            [MAILOPSD, "--config", str(self.cfg), "run"]))
        self.daemon.wait_event("bans_restored", timeout=30)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def fail(self, ip: str, times: int) -> None:
        with open(self.mainlog, "a") as fh:
            for _ in range(times):
                fh.write(auth_failed(ip))

    def kernel(self) -> set[str]:
        return set(iptables_bans(self.ns))

    def cli(self, *args: str) -> Any:
        return self.ns.run([MAILOPSD, "--config", str(self.cfg), *args], check=False)

    def bans(self) -> dict[str, dict[str, Any]]:
        out = self.cli("bans", "list", "--json")
        assert out.returncode == 0, out.stderr
        return {b["ip"]: b for b in json.loads(out.stdout)}

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        assert self.daemon is not None
        return [e for e in self.daemon.events() if e.get("event") == name
                and all(e.get(k) == v for k, v in fields.items())]


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        server.psql("CREATE DATABASE mailopsd")
        yield server


@pytest.fixture(scope="module")
def mxs(pg: PrivatePostgres) -> Iterator[list[Mx]]:
    with scratch_root() as root, Netns("mocl") as n1, Netns("mocl") as n2, Netns("mocl") as n3:
        made = []
        for name, ns in zip(NAMES, (n1, n2, n3), strict=True):
            mainlog = root / name / "mainlog"
            mainlog.parent.mkdir(parents=True)
            mainlog.touch()
            cfg = write_config(
                root / name,
                blocker={"enabled": True, "mainlog": str(mainlog), "flood": {"enabled": False},
                         "rules": {"auth-failed": {"maxretry": 5, "findtime": "10m",
                                                   "bantime": "1h"}},
                         "firewall": {"ports": [25], "check_interval": "500ms",
                                      "verify_interval": "2s"}},
                cluster={"dsn": pg.dsn("mailopsd"), "node": name, "retry_interval": "1s"})
            made.append(Mx(name, ns, cfg, mainlog))
        init = made[0].cli("cluster", "init")
        assert init.returncode == 0, init.stderr
        try:
            for mx in made:
                mx.start()
            for mx in made:
                assert mx.daemon is not None
                mx.daemon.wait_event("cluster_connected", timeout=15)
                mx.daemon.wait_event("cluster_snapshot_applied", timeout=15)
            yield made
        finally:
            for mx in made:
                mx.stop()


def _ts(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _epoch(iso: str) -> float:
    """An ISO 8601 timestamp of `bans list --json` as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _everywhere(mxs: list[Mx], ip: str, present: bool = True, timeout: float = 5) -> float:
    t0 = time.monotonic()
    wait_until(lambda: all((ip in m.kernel()) == present for m in mxs), timeout,
               what=f"{ip} {'in' if present else 'out of'} every kernel")
    return time.monotonic() - t0


def test_a_ban_reaches_every_kernel_and_bans_list_names_its_node(mxs: list[Mx]) -> None:
    mx1, mx2, mx3 = mxs
    ip = "192.0.2.10"
    mx1.fail(ip, 5)
    assert mx1.daemon is not None
    decided = mx1.daemon.wait_event("ip_banned", ip=ip, timeout=10)
    _everywhere(mxs, ip)
    for m in (mx2, mx3):
        assert m.daemon is not None
        applied = m.daemon.wait_event("ip_banned", ip=ip, origin="mx1")
        # both events are logged once the kernel has the ban (same host clock); the p99 over
        # hundreds of bans is bench/cluster_propagation.py's (17-112 ms)
        assert _ts(applied) - _ts(decided) < 1.0  # issue: p99 <= 1 s
    for m in mxs:
        ban = m.bans()[ip]
        assert (ban["origin"], ban["rule"]) == ("mx1", "auth-failed")
    assert mx2.events("ip_banned", ip=ip, origin="mx1", source="cluster")
    assert not mx1.events("ip_banned", ip=ip, origin="mx1")  # its own ban, applied once
    table = mx3.cli("bans", "list").stdout
    assert "ORIGIN" in table and "mx1" in table


def test_bans_remove_on_any_node_lifts_it_everywhere(mxs: list[Mx]) -> None:
    mx1, mx2, mx3 = mxs
    ip = "192.0.2.11"
    assert mx2.cli("bans", "add", ip, "-d", "1h").returncode == 0
    _everywhere(mxs, ip)
    assert mx1.bans()[ip]["origin"] == "mx2"
    assert mx3.cli("bans", "remove", ip).returncode == 0
    removed = time.time()
    _everywhere(mxs, ip, present=False)
    for m in (mx1, mx2):
        assert m.daemon is not None
        lifted = m.daemon.wait_event("ip_unbanned", ip=ip, origin="mx3")
        assert _ts(lifted) - removed < 1.5  # issue: kernels and bans list within 1.5 s
    wait_until(lambda: all(ip not in m.bans() for m in mxs), 5)


def test_hits_on_two_nodes_add_up_to_one_ban_everywhere(mxs: list[Mx]) -> None:
    mx1, mx2, _mx3 = mxs
    ip = "192.0.2.12"
    mx1.fail(ip, 3)
    time.sleep(1.5)  # the hits reach the store and mx2
    assert all(ip not in m.kernel() for m in mxs)
    mx2.fail(ip, 2)
    _everywhere(mxs, ip, timeout=8)
    assert mx2.events("ip_banned", ip=ip, rule="auth-failed", count=5)
    for m in mxs:
        assert m.bans()[ip]["origin"] == "mx2"


def test_a_ban_ends_on_every_node_at_its_absolute_expiry(mxs: list[Mx]) -> None:
    ip = "192.0.2.13"
    assert mxs[0].cli("bans", "add", ip, "-d", "6s").returncode == 0
    expires = _epoch(mxs[0].bans()[ip]["expires"])  # absolute, the same on every node
    _everywhere(mxs, ip)
    _everywhere(mxs, ip, present=False, timeout=12)
    for m in mxs:
        assert m.daemon is not None
        # each node lifts it at the expiry itself, or on mx1's "expired" unban if that is first
        lifted = m.daemon.wait_event("ip_unbanned", ip=ip)
        assert lifted["why"] in ("expired", "cluster")
        assert _ts(lifted) - expires < 3.0  # issue: within 3 s of its absolute expiry


def test_a_node_away_catches_up_when_it_returns(mxs: list[Mx]) -> None:
    mx1, _mx2, mx3 = mxs
    mx3.stop()
    ip = "192.0.2.14"
    mx1.fail(ip, 5)
    _everywhere(mxs[:2], ip)
    mx3.start()
    _everywhere(mxs, ip, timeout=8)
    assert mx3.bans()[ip]["origin"] == "mx1"


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_store_away_keeps_every_rule_and_delivers_the_queue_on_return(
        mxs: list[Mx], pg: PrivatePostgres, how: str) -> None:
    mx1, mx2, mx3 = mxs
    before = [m.kernel() for m in mxs]
    downs = [len(m.events("cluster_store_down")) for m in mxs]
    ups = [len(m.events("cluster_store_up")) for m in mxs]
    if how == "kill":
        pg.kill()  # SIGKILL to the postmaster: crash recovery at the restart
    else:
        pg.stop("fast")
    try:
        ip = "192.0.2.15" if how == "stop" else "192.0.2.16"
        mx1.fail(ip, 5)
        wait_until(lambda: ip in mx1.kernel(), 5, what="mx1 still decides and enforces")
        wait_until(lambda: all(len(m.events("cluster_store_down")) > n
                               for m, n in zip(mxs, downs, strict=True)), 5,
                   what="one cluster_store_down per node within 5 s")
        time.sleep(4)  # several retries
        for m, kept, n in zip(mxs, before, downs, strict=True):
            assert kept <= m.kernel()  # nothing flushed because the store is away
            assert len(m.events("cluster_store_down")) == n + 1
        assert ip not in mx2.kernel() and ip not in mx3.kernel()
    finally:
        pg.start()
    t0 = time.monotonic()
    _everywhere(mxs, ip, timeout=8)
    assert time.monotonic() - t0 < 5
    wait_until(lambda: all(len(m.events("cluster_store_up")) == n + 1
                           for m, n in zip(mxs, ups, strict=True)), 5,
               what="one cluster_store_up per node")
    assert all(m.kernel() >= kept for m, kept in zip(mxs, before, strict=True))


def test_bans_command_publishes_even_with_its_daemon_stopped(mxs: list[Mx],
                                                              pg: PrivatePostgres) -> None:
    _mx1, mx2, _mx3 = mxs
    mx2.stop()
    try:
        out = mx2.cli("bans", "add", "192.0.2.17", "-d", "1h")
        assert out.returncode == 0, out.stderr
        assert "published to the cluster as node mx2" in out.stdout
        _everywhere([mxs[0], mxs[2]], "192.0.2.17")
        pg.stop("fast")
        try:
            out = mx2.cli("bans", "remove", "192.0.2.17")
            assert out.returncode == 0, out.stderr
            assert "queued for the cluster store" in out.stdout
        finally:
            pg.start()
        time.sleep(1)
        assert "192.0.2.17" in mxs[0].kernel()  # nobody pushed the queue yet
    finally:
        mx2.start()  # its daemon pushes what the command queued
    _everywhere(mxs, "192.0.2.17", present=False)


def test_forged_rows_never_reach_a_kernel(mxs: list[Mx], pg: PrivatePostgres) -> None:
    with psycopg.connect(pg.dsn("mailopsd"), autocommit=True) as conn:
        for key, ip in [("f1", "127.0.0.1"), ("f2", "192.0.0.0/16"), ("f3", "not-an-ip"),
                        ("f4", "192.0.2.18")]:
            conn.execute("INSERT INTO mailopsd.bans (action, ip, node, key, expires) VALUES "
                         "('ban', %s, 'forger', %s, now() + interval '1h')", (ip, key))
    _everywhere(mxs, "192.0.2.18")
    for m in mxs:
        refused = {e["ip"]: e["why"] for e in m.events("cluster_row_refused")}
        assert refused["127.0.0.1"] == "on this node's ignore list"
        assert refused["192.0.0.0/16"] == "network wider than /24"
        assert refused["not-an-ip"] == "not an address or network"
        assert not {"127.0.0.1", "192.0.0.0/16"} & m.kernel()


def test_failover_to_a_promoted_standby_mid_stream() -> None:
    with PrivatePostgres() as primary, scratch_root() as root, Netns("mocl") as n1, \
            Netns("mocl") as n2:
        primary.psql("CREATE DATABASE mailopsd")
        standby = primary.standby(sync=False)
        dsn = (f"postgresql://postgres@/mailopsd?host={primary.sock},{standby.sock}"
               f"&port={primary.port},{standby.port}&target_session_attrs=read-write")
        made = []
        for name, ns in (("fa", n1), ("fb", n2)):
            mainlog = root / name / "mainlog"
            mainlog.parent.mkdir(parents=True)
            mainlog.touch()
            cfg = write_config(
                root / name,
                blocker={"enabled": True, "mainlog": str(mainlog), "flood": {"enabled": False},
                         "rules": {"auth-failed": {"maxretry": 1, "findtime": "10m",
                                                   "bantime": "1h"}},
                         "firewall": {"ports": [25], "check_interval": "500ms"}},
                cluster={"dsn": dsn, "node": name, "retry_interval": "1s"})
            made.append(Mx(name, ns, cfg, mainlog))
        assert made[0].cli("cluster", "init").returncode == 0
        fa, fb = made
        try:
            for m in made:
                m.start()
            ips = [f"198.51.100.{i}" for i in range(1, 41)]
            for i, ip in enumerate(ips):
                fa.fail(ip, 1)
                if i == 20:
                    primary.kill()
                    standby.promote()
                time.sleep(0.05)
            want = set(ips)
            wait_until(lambda: want <= fb.kernel(), 30, what="every ban on fb after failover")
            banned = [e["ip"] for e in fb.events("ip_banned") if e.get("origin") == "fa"]
            assert sorted(banned) == sorted(ips)  # each once: nothing lost, nothing twice
            assert fb.events("cluster_store_up") and fa.events("cluster_store_up")
        finally:
            for m in made:
                m.stop()
