"""The sync loop against a real PostgreSQL 15: push, NOTIFY, catch-up by id, trust, outages,
failover. Each node is a real ``ClusterService`` with its own state database; what it would
hand the blocker is recorded (the blocker's side is proven end to end in test_cluster_e2e)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mailopsd.cluster.service import ClusterService
from mailopsd.core.config.loader import parse_config
from mailopsd.core.state import StateDB
from tests.support.common import scratch_root, wait_until
from tests.support.postgres import PrivatePostgres

pytestmark = pytest.mark.integration
psycopg = pytest.importorskip("psycopg")


class Sink:
    """Records what the cluster hands the blocker (RemoteSink)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.hits: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()
        self.at: dict[str, float] = {}

    def apply_remote(self, rows: Sequence[Any]) -> None:
        with self.lock:
            for r in rows:
                self.rows.append(r)
                self.at.setdefault(f"{r.action}:{r.ip}", time.monotonic())

    def remote_hits(self, hits: Sequence[tuple[str, str, float]]) -> None:
        with self.lock:
            self.hits.extend(hits)

    def ips(self, action: str = "ban") -> list[str]:
        with self.lock:
            return [r.ip for r in self.rows if r.action == action]


class Node:
    def __init__(self, root: Path, name: str, dsn: str) -> None:
        self.root, self.name, self.dsn = root / name, name, dsn
        self.sink = Sink()
        self.service: ClusterService | None = None

    def start(self) -> Node:
        cfg = parse_config({"daemon": {"state_dir": str(self.root / "state"),
                                       "run_dir": str(self.root / "run")},
                            "cluster": {"dsn": self.dsn, "node": self.name,
                                        "retry_interval": 0.5}})
        self.service = ClusterService(cfg, StateDB(cfg.daemon.state_dir))
        self.service.start()
        self.service.attach(self.sink)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(5)
            self.service = None

    def ban(self, ip: str, ttl: float | None = 3600) -> None:
        now = time.time()
        assert self.service is not None
        self.service.publish_ban(ip, "auth", "test", 5, now, None if ttl is None else now + ttl)


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture()
def dsn(pg: PrivatePostgres) -> Iterator[str]:
    from mailopsd.cluster.pgschema import migrate

    db = "t" + uuid.uuid4().hex[:10]
    pg.psql(f"CREATE DATABASE {db}")
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        migrate(conn)
    yield pg.dsn(db)
    pg.psql(f"DROP DATABASE {db} WITH (FORCE)")


@pytest.fixture()
def nodes(dsn: str) -> Iterator[list[Node]]:
    with scratch_root() as root:
        made = [Node(root, n, dsn) for n in ("mx1", "mx2", "mx3")]
        try:
            yield made
        finally:
            for n in made:
                n.stop()


def _counts(sink: Sink) -> dict[str, int]:
    out: dict[str, int] = {}
    for ip in sink.ips():
        out[ip] = out.get(ip, 0) + 1
    return out


def test_a_ban_reaches_every_other_node_within_a_second(nodes: list[Node]) -> None:
    for n in nodes:
        n.start()
    wait_until(lambda: all(n.service and n.service.loop.up for n in nodes), 15)
    t0 = time.monotonic()
    nodes[0].ban("192.0.2.7")
    for other in nodes[1:]:
        wait_until(lambda o=other: "ban:192.0.2.7" in o.sink.at, 5, what="ban arrived")
        assert other.sink.at["ban:192.0.2.7"] - t0 < 1.0
    assert nodes[0].sink.ips() == []  # a node does not re-apply its own rows
    row = nodes[1].sink.rows[0]
    assert (row.node, row.rule, row.hits) == ("mx1", "auth", 5)
    assert row.expires == pytest.approx(time.time() + 3600, abs=10)


def test_rows_written_with_sql_are_read_and_forged_ones_refused(nodes: list[Node],
                                                               dsn: str) -> None:
    node = nodes[1].start()
    wait_until(lambda: node.service and node.service.loop.up, 15)
    with capture_logs() as logs, psycopg.connect(dsn, autocommit=True) as conn:
        for key, ip, expires in [("a", "not-an-ip", "now() + interval '1h'"),
                                 ("b", "10.0.0.0/8", "now() + interval '1h'"),
                                 ("c", "2001:db8::/48", "now() + interval '1h'"),
                                 ("d", "192.0.2.50", "now() - interval '1h'"),
                                 ("e", "198.51.100.0/24", "NULL")]:
            conn.execute(f"INSERT INTO mailopsd.bans (action, ip, node, key, expires) VALUES "
                         f"('ban', %s, 'intruder', %s, {expires})", (ip, key))
        wait_until(lambda: node.sink.ips(), 5, what="the valid row")
        time.sleep(0.5)
    assert node.sink.ips() == ["198.51.100.0/24"]
    refused = {e["ip"]: e["why"] for e in logs if e["event"] == "cluster_row_refused"}
    assert refused == {"not-an-ip": "not an address or network",
                       "10.0.0.0/8": "network wider than /24",
                       "2001:db8::/48": "network wider than /64",
                       "192.0.2.50": "expiry in the past"}


def test_a_node_that_was_down_catches_up_from_its_last_id_once(nodes: list[Node]) -> None:
    mx1, mx2 = nodes[0].start(), nodes[1].start()
    wait_until(lambda: mx1.service.loop.up and mx2.service.loop.up, 15)  # type: ignore[union-attr]
    mx1.ban("192.0.2.1")
    wait_until(lambda: mx2.sink.ips() == ["192.0.2.1"], 5)
    mx2.stop()
    for i in range(2, 52):
        mx1.ban(f"192.0.2.{i}")
    mx2.sink = Sink()
    mx2.start()
    wait_until(lambda: len(mx2.sink.ips()) >= 50, 10, what="catch-up")
    time.sleep(1)
    assert sorted(_counts(mx2.sink)) == sorted(f"192.0.2.{i}" for i in range(2, 52))
    assert set(_counts(mx2.sink).values()) == {1}


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_store_outage_queues_and_publishes_on_return_once(nodes: list[Node], pg: PrivatePostgres,
                                                          how: str) -> None:
    mx1, mx2 = nodes[0].start(), nodes[1].start()
    wait_until(lambda: mx1.service.loop.up and mx2.service.loop.up, 15)  # type: ignore[union-attr]
    with capture_logs() as logs:
        for i in range(1, 21):
            mx1.ban(f"198.51.100.{i}")
        time.sleep(0.3)  # mid-stream: part of them reached the store
        t_down = time.monotonic()
        if how == "kill":
            pg.kill()
        else:
            pg.stop("fast")
        for i in range(21, 41):
            mx1.ban(f"198.51.100.{i}")
        wait_until(lambda: any(e["event"] == "cluster_store_down" for e in logs), 10)
        assert time.monotonic() - t_down < 5
        time.sleep(3)  # several retries: still one warning per node
        pg.start()
        t_up = time.monotonic()
        wait_until(lambda: len(mx2.sink.ips()) >= 40, 15, what="queued bans published")
        assert time.monotonic() - t_up < 5
        time.sleep(1)
    assert sorted(_counts(mx2.sink)) == sorted(f"198.51.100.{i}" for i in range(1, 41))
    assert set(_counts(mx2.sink).values()) == {1}
    downs = [e for e in logs if e["event"] == "cluster_store_down"]
    assert sorted(e["node"] for e in downs) == ["mx1", "mx2"]
    ups = [e for e in logs if e["event"] == "cluster_store_up"]
    assert sorted(e["node"] for e in ups) == ["mx1", "mx2"]


def test_failover_to_a_promoted_standby_loses_and_repeats_nothing() -> None:
    from mailopsd.cluster.pgschema import migrate

    with PrivatePostgres() as primary, scratch_root() as root:
        primary.psql("CREATE DATABASE mailopsd")
        with psycopg.connect(primary.dsn("mailopsd"), autocommit=True) as conn:
            migrate(conn)
        standby = primary.standby(sync=False)  # asynchronous: the newest rows may be lost
        dsn = (f"postgresql://postgres@/mailopsd?host={primary.sock},{standby.sock}"
               f"&port={primary.port},{standby.port}&target_session_attrs=read-write")
        mx1, mx2 = Node(root, "mx1", dsn).start(), Node(root, "mx2", dsn).start()
        try:
            wait_until(lambda: mx1.service.loop.up and mx2.service.loop.up,  # type: ignore[union-attr]
                       15)
            with capture_logs() as logs:
                for i in range(1, 31):
                    mx1.ban(f"192.0.2.{i}")
                    mx2.ban(f"198.51.100.{i}")
                    if i == 15:
                        primary.kill()  # mid-stream
                        standby.promote()
                    time.sleep(0.02)
                want1 = sorted(f"192.0.2.{i}" for i in range(1, 31))
                want2 = sorted(f"198.51.100.{i}" for i in range(1, 31))
                wait_until(lambda: sorted(_counts(mx2.sink)) == want1
                           and sorted(_counts(mx1.sink)) == want2, 20, what="all bans")
                time.sleep(1)
            assert set(_counts(mx2.sink).values()) == {1}
            assert set(_counts(mx1.sink).values()) == {1}
            assert [e for e in logs if e["event"] == "cluster_store_up"]
            with psycopg.connect(standby.dsn("mailopsd")) as conn:
                stored = conn.execute("SELECT count(*), count(DISTINCT key) FROM mailopsd.bans"
                                      ).fetchone()
            assert stored == (60, 60)
        finally:
            mx1.stop()
            mx2.stop()


def test_a_new_node_starts_from_the_bans_in_force_then_follows_the_log(nodes: list[Node],
                                                                       dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for key, action, ip, expires in [
                ("a", "ban", "192.0.2.1", "now() + interval '1h'"),
                ("b", "ban", "192.0.2.2", "now() + interval '1h'"),
                ("c", "unban", "192.0.2.2", "NULL"),
                ("d", "ban", "192.0.2.3", "now() + interval '1 second'"),
                ("e", "ban", "2001:db8:1::/64", "NULL")]:
            conn.execute(f"INSERT INTO mailopsd.bans (action, ip, node, rule, key, expires) "
                         f"VALUES (%s, %s, %s, %s, %s, {expires})",
                         (action, ip, "mx\\9", "r\\x", key))
    time.sleep(1.2)  # 192.0.2.3 runs out
    node = nodes[2].start()
    wait_until(lambda: len(node.sink.ips()) == 2, 10, what="the snapshot")
    assert sorted(node.sink.ips()) == ["192.0.2.1", "2001:db8:1::/64"]
    assert {(r.node, r.rule) for r in node.sink.rows} == {("mx\\9", "r\\x")}
    permanent = next(r for r in node.sink.rows if r.ip == "2001:db8:1::/64")
    assert permanent.expires is None
    nodes[0].start().ban("192.0.2.4")
    wait_until(lambda: "192.0.2.4" in node.sink.ips(), 5, what="a ban after the snapshot")
    assert len(node.sink.ips()) == 3


def test_nodes_work_with_their_own_unprivileged_roles(pg: PrivatePostgres, dsn: str) -> None:
    from mailopsd.cluster.pgschema import grants

    db = dsn.split("@/")[1].split("?")[0]
    for role in ("mailopsd_r1", "mailopsd_r2"):
        pg.psql(f"DO $$BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object "
                "THEN NULL; END$$")
        pg.psql("\n".join(line for line in grants(role).splitlines()
                          if line.startswith("GRANT")), db=db)
    with scratch_root() as root:
        r1 = Node(root, "mx1", pg.dsn(db, user="mailopsd_r1")).start()
        r2 = Node(root, "mx2", pg.dsn(db, user="mailopsd_r2")).start()
        try:
            wait_until(lambda: r1.service.loop.up and r2.service.loop.up,  # type: ignore[union-attr]
                       15)
            r1.ban("192.0.2.77")
            assert r1.service is not None
            r1.service.publish_hit("auth-failed", "192.0.2.78", time.time())
            r2.service.publish_unban("192.0.2.77", "cli", time.time())  # type: ignore[union-attr]
            wait_until(lambda: r2.sink.ips() == ["192.0.2.77"] and r2.sink.hits
                       and r1.sink.ips("unban") == ["192.0.2.77"], 10, what="rows both ways")
            assert r2.sink.hits[0][:2] == ("auth-failed", "192.0.2.78")
            with psycopg.connect(dsn) as conn:
                roles = dict(conn.execute("SELECT name, role FROM mailopsd.nodes").fetchall())
            assert roles == {"mx1": "mailopsd_r1", "mx2": "mailopsd_r2"}
        finally:
            r1.stop()
            r2.stop()
