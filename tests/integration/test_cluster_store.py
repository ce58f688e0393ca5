"""``mailopsd cluster init`` / ``status`` against a real PostgreSQL 15, and the node roles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.common import scratch_root
from tests.support.daemon import run_cli, write_config
from tests.support.postgres import PrivatePostgres

pytestmark = pytest.mark.integration
psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture()
def store(pg: PrivatePostgres) -> Iterator[str]:
    """A fresh database per test; yields its owner DSN."""
    import uuid

    db = "t" + uuid.uuid4().hex[:10]
    pg.psql(f"CREATE DATABASE {db}")
    yield pg.dsn(db)
    pg.psql(f"DROP DATABASE {db} WITH (FORCE)")


def _config(root: Path, dsn: str, node: str = "mx1") -> Path:
    return write_config(root, cluster={"dsn": dsn, "node": node})


def test_cluster_init_creates_the_schema_once_and_prints_grants(store: str) -> None:
    with scratch_root() as root:
        cfg = _config(root, store)
        first = run_cli(cfg, "cluster", "init", "--role", "mailopsd_mx1")
        assert first.returncode == 0, first.stderr
        assert "schema version 1 (created)" in first.stdout
        assert 'GRANT SELECT, INSERT ON mailopsd.bans, mailopsd.hits TO "mailopsd_mx1";' \
            in first.stdout
        again = run_cli(cfg, "cluster", "init")
        assert again.returncode == 0, again.stderr
        assert "already current" in again.stdout
    with psycopg.connect(store) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'mailopsd'")}
    assert tables == {"meta", "nodes", "bans", "current", "hits"}


def test_status_lists_nodes_behind_and_published(store: str) -> None:
    with scratch_root() as root:
        cfg = _config(root, store)
        assert run_cli(cfg, "cluster", "init").returncode == 0
        with psycopg.connect(store, autocommit=True) as conn:
            conn.execute("INSERT INTO mailopsd.nodes (name, applied_id) VALUES ('mx1', 2), "
                         "('mx2', 0)")
            for i, ip in enumerate(["192.0.2.7", "192.0.2.8"]):
                conn.execute("INSERT INTO mailopsd.bans (action, ip, rule, node, key, expires) "
                             "VALUES ('ban', %s, 'auth', 'mx1', %s, now() + interval '1h')",
                             (ip, f"k{i}"))
        out = run_cli(cfg, "cluster", "status", "--json")
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        nodes = {n["node"]: n for n in status["nodes"]}
        assert status["bans_in_force"] == 2
        assert nodes["mx1"]["published"] == 2 and nodes["mx1"]["in_force"] == 2
        assert nodes["mx1"]["behind"] == 0 and nodes["mx2"]["behind"] == 2
        table = run_cli(cfg, "cluster", "status")
        assert table.returncode == 0 and "mx2" in table.stdout


def test_status_without_schema_says_run_init(store: str) -> None:
    with scratch_root() as root:
        out = run_cli(_config(root, store), "cluster", "status")
    assert out.returncode == 1
    assert "cluster init" in out.stderr


def test_unreachable_store_is_a_clear_error(pg: PrivatePostgres) -> None:
    with scratch_root() as root:
        out = run_cli(_config(root, pg.dsn("nosuchdb")), "cluster", "status")
    assert out.returncode == 1
    assert "cannot connect to the cluster store" in out.stderr


def test_a_node_role_inserts_only_its_own_rows(pg: PrivatePostgres, store: str) -> None:
    with scratch_root() as root:
        init = run_cli(_config(root, store), "cluster", "init", "--role", "mailopsd_mx1")
    db = store.split("@/")[1].split("?")[0]
    pg.psql("DO $$BEGIN CREATE ROLE mailopsd_mx1 LOGIN; EXCEPTION WHEN duplicate_object "
            "THEN NULL; END$$")
    pg.psql("DO $$BEGIN CREATE ROLE mailopsd_mx2 LOGIN; EXCEPTION WHEN duplicate_object "
            "THEN NULL; END$$")
    grants = "\n".join(line for line in init.stdout.splitlines() if line.startswith("GRANT"))
    pg.psql(grants, db=db)
    pg.psql(grants.replace("mailopsd_mx1", "mailopsd_mx2"), db=db)
    with psycopg.connect(pg.dsn(db, user="mailopsd_mx1"), autocommit=True) as mx1, \
            psycopg.connect(pg.dsn(db, user="mailopsd_mx2"), autocommit=True) as mx2:
        mx1.execute("INSERT INTO mailopsd.nodes (name) VALUES ('mx1')")
        mx2.execute("INSERT INTO mailopsd.nodes (name) VALUES ('mx2')")
        mx1.execute("INSERT INTO mailopsd.bans (action, ip, node, key) "
                    "VALUES ('ban', '192.0.2.9', 'mx1', 'a')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mx1.execute("INSERT INTO mailopsd.bans (action, ip, node, key) "
                        "VALUES ('ban', '192.0.2.10', 'mx2', 'b')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mx1.execute("INSERT INTO mailopsd.bans (action, ip, node, key, author) "
                        "VALUES ('ban', '192.0.2.10', 'mx1', 'c', 'mailopsd_mx2')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mx1.execute("CREATE TABLE mailopsd.evil (x int)")  # no DDL for node roles
        assert mx2.execute("UPDATE mailopsd.nodes SET applied_id = 9 WHERE name = 'mx1'"
                           ).rowcount == 0
    with scratch_root() as root:
        denied = run_cli(_config(root, pg.dsn(db, user="mailopsd_mx1")), "cluster", "init")
    assert denied.returncode == 1 and "run it as the database owner" in denied.stderr
