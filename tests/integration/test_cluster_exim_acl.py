"""The shipped Exim ACL (etc/exim4/cluster-connect.acl) with a real Exim 4.96 and a real
PostgreSQL: a banned address (or one inside a banned /24) is refused at connect time, others
are served, and a store outage lets mail through."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.cluster.pgschema import migrate
from tests.support.exim import PrivateExim
from tests.support.postgres import PrivatePostgres

pytestmark = pytest.mark.integration
psycopg = pytest.importorskip("psycopg")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        server.psql("CREATE DATABASE mailopsd")
        with psycopg.connect(server.dsn("mailopsd"), autocommit=True) as conn:
            migrate(conn)
            for ip, expires in [("192.0.2.7", "now() + interval '1h'"),
                                ("198.51.100.0/24", "NULL"),
                                ("192.0.2.8", "now() - interval '1s'")]:
                conn.execute("INSERT INTO mailopsd.bans (action, ip, node, key, expires, "
                             f"decided) VALUES ('ban', %s, 'mx1', %s, {expires}, "
                             "now() - interval '1h')", (ip, uuid.uuid4().hex))
        yield server


def greeting(exim: PrivateExim, ip: str) -> str:
    """Exim's first reply code to a (simulated, -bh) client from ``ip``."""
    out = exim.exim("-bh", ip, input="QUIT\r\n", in_netns=False).stdout
    replies = [line for line in out.splitlines() if line[:3].isdigit()]
    assert replies, out
    return replies[0]


def test_banned_addresses_are_refused_at_connect(pg: PrivatePostgres, mail_root: Path) -> None:
    acl = mail_root / "cluster-connect.acl"
    shutil.copy(REPO / "etc/exim4/cluster-connect.acl", acl)
    acl.chmod(0o644)
    main = (f"hide pgsql_servers = ({pg.sock}/.s.PGSQL.{pg.port})/mailopsd/postgres/\n"
            f"acl_smtp_connect = {acl}\n")
    exim = PrivateExim(mail_root, variant=main)
    exim.write_files()
    try:
        exim.check_config()
        assert greeting(exim, "192.0.2.7") == "554 5.7.1 192.0.2.7 is banned here"
        assert greeting(exim, "198.51.100.9") == "554 5.7.1 198.51.100.9 is banned here"
        assert greeting(exim, "192.0.2.8").startswith("220")  # that ban is over
        assert greeting(exim, "192.0.2.99").startswith("220")
        pg.stop("fast")
        try:
            assert greeting(exim, "192.0.2.7").startswith("220")  # fail open, never a 4xx
        finally:
            pg.start()
    finally:
        exim.stop()
