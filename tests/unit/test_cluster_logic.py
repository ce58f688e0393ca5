"""[cluster] config, trust checks on store rows, and single-host installs never importing
psycopg."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailopsd.cluster import trust
from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError


def row(ip: str = "192.0.2.7", action: str = "ban", decided: float = 1000.0,
        expires: float | None = 4600.0, inserted: float = 1001.0) -> trust.Row:
    return trust.Row(id=1, action=action, ip=ip, rule="auth-failed", reason="", hits=5,
                     decided=decided, expires=expires, node="mx2", inserted=inserted, key="k")


def test_cluster_table_is_optional_and_node_defaults_to_the_host_name() -> None:
    assert parse_config({}).cluster is None
    cfg = parse_config({"cluster": {"dsn_file": "/etc/mailopsd/cluster.dsn"}}).cluster
    assert cfg is not None and cfg.node_name and "." not in cfg.node_name


@pytest.mark.parametrize(("table", "key"), [
    ({}, "cluster"),
    ({"dsn": "postgresql:///m", "dsn_file": "/x"}, "cluster"),
    ({"dsn_file": "relative.dsn"}, "cluster"),
    ({"dsn": "postgresql:///m", "node": "mx 1"}, "cluster.node"),
    ({"dsn": "postgresql:///m", "retry_interval": "0s"}, "cluster.retry_interval"),
    ({"dsn": "postgresql:///m", "nodes": "mx1"}, "cluster.nodes"),
])
def test_bad_cluster_tables_name_the_key(table: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cluster": table})
    assert key in [p.key for p in err.value.problems]


@pytest.mark.parametrize(("ip", "why"), [
    ("bogus", "not an address or network"),
    ("192.0.2.0/23", "network wider than /24"),
    ("2001:db8::/63", "network wider than /64"),
    ("x" * 500, "not an address or network"),
])
def test_rows_with_bad_targets_are_refused(ip: str, why: str) -> None:
    assert trust.check(row(ip), 2000.0) == (None, why)


def test_rows_written_already_expired_or_from_the_future_are_refused() -> None:
    assert trust.check(row(expires=900.0), 2000.0)[1] == "expiry in the past"
    assert trust.check(row(decided=9000.0, expires=99999.0), 2000.0)[1] == \
        "decided in the future"


def test_good_rows_pass_with_their_canonical_target() -> None:
    ok, why = trust.check(row("2001:DB8:0:0::1/64"), 2000.0)
    assert why == "" and ok is not None and ok.ip == "2001:db8::/64"
    ok, _ = trust.check(row("::ffff:192.0.2.9"), 2000.0)
    assert ok is not None and ok.ip == "192.0.2.9"
    assert trust.check(row(expires=None), 2000.0)[0] is not None  # permanent
    # a ban that ran out since it was written is valid (the blocker skips it quietly)
    assert trust.check(row(expires=1500.0), 2000.0)[0] is not None
    assert trust.check(row(action="unban", expires=None), 2000.0)[0] is not None


def test_single_host_daemon_and_cli_never_import_psycopg(tmp_path: object) -> None:
    code = f"""
import sys
from mailopsd.cli.main import build_parser
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.registry import SERVICES, service_factory
build_parser()
cfg = parse_config({{"daemon": {{"state_dir": "{tmp_path}/s", "run_dir": "{tmp_path}/r"}},
                    "blocker": {{"enabled": False}}, "sent": {{"enabled": False}},
                    "health": {{"enabled": False}}}})
made = [service_factory(s)(cfg, StateDB(cfg.daemon.state_dir)) for s in SERVICES]
assert made == [None] * len(SERVICES), made
assert "psycopg" not in sys.modules, "psycopg imported"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_rows_with_impossible_times_or_huge_text_are_refused_or_cut() -> None:
    inf = float("inf")
    assert trust.check(row(expires=inf), 2000.0)[1] == "time out of range"
    assert trust.check(row(decided=-inf), 2000.0)[1] == "time out of range"
    ok, _ = trust.check(row()._replace(rule="r" * 10_000), 2000.0)
    assert ok is not None and len(ok.rule) == 64
    assert trust.hit_time(inf, 2000.0, 86400) is None
    assert trust.hit_time(float("nan"), 2000.0, 86400) is None
    assert trust.hit_time(1990.0, 2000.0, 86400) == 1990.0
    assert trust.hit_time(2000.0 - 90000, 2000.0, 86400) is None


def test_psycopg_is_imported_only_lazily_inside_the_cluster_package() -> None:
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    found = []
    for path in [*(repo / "mailopsd").rglob("*.py"), *(repo / "jobs").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "psycopg" for n in names):
                found.append((str(path.relative_to(repo)), id(node) in top_level))
    assert found == [("mailopsd/cluster/db.py", False)]
