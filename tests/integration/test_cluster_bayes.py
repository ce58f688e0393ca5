"""Two nodes train ONE shared Bayes in PostgreSQL (SpamAssassin's BayesStore::PgSQL with
Debian's libdbd-pg-perl): each node's real learn-spam job, then ``bayes stats``, ``bayes backup``
and ``bayes restore`` (and the refusal of a damaged backup) on the shared database."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.learn_spam_scene import msg
from tests.support.common import scratch_root
from tests.support.daemon import run_cli, write_config
from tests.support.postgres import PrivatePostgres
from tests.support.users import TestUser, deliver

pytestmark = pytest.mark.integration
SQL = Path("/usr/share/doc/spamassassin/sql/bayes_pg.sql")
if not SQL.exists() or subprocess.run(["perl", "-MDBD::Pg", "-e", "1"],
                                      check=False).returncode != 0:
    pytest.skip("needs spamassassin's bayes_pg.sql and libdbd-pg-perl",
                allow_module_level=True)


def local_cf(pg: PrivatePostgres) -> str:
    """The lines docs/cluster.md tells admins to put in /etc/spamassassin/local.cf."""
    return ("bayes_store_module Mail::SpamAssassin::BayesStore::PgSQL\n"
            f"bayes_sql_dsn DBI:Pg:dbname=bayes;host={pg.sock};port={pg.port}\n"
            "bayes_sql_username postgres\n"
            "bayes_sql_override_username mailopsd\n")


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[PrivatePostgres, Path, TestUser, Path]]:
    with PrivatePostgres() as pg, scratch_root() as root, \
            TestUser(root, prefix="bo", maildir=False) as owner:
        pg.psql("CREATE DATABASE bayes")
        pg.psql(SQL.read_text(), db="bayes")
        site = root / "site"
        site.mkdir(mode=0o755)
        for pre in Path("/etc/spamassassin").glob("*.pre"):  # they load the Bayes plugin
            shutil.copy(pre, site / pre.name)
            (site / pre.name).chmod(0o644)
        (site / "local.cf").write_text(local_cf(pg))
        (site / "local.cf").chmod(0o644)
        yield pg, root, owner, site


def node_config(root: Path, name: str, owner: TestUser, site: Path, user: TestUser) -> Path:
    return write_config(
        root / name, mailboxes={"users": [user.name]},
        spamassassin={"bayes_owner": owner.name, "site_config_dir": str(site)},
        jobs={"learn-spam": {"staging_dir": str(root), "timeout": "120s"}})


def stats(cfg: Path) -> dict[str, int]:
    out = run_cli(cfg, "bayes", "stats", "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    data = json.loads(out.stdout)
    return {k: data[k] for k in ("nspam", "nham", "ntokens")}


def test_two_nodes_learn_into_one_pgsql_bayes_and_backup_restore_it(
        shared: tuple[PrivatePostgres, Path, TestUser, Path]) -> None:
    pg, root, owner, site = shared
    with TestUser(root, prefix="b1") as u1, TestUser(root, prefix="b2") as u2:
        cfg1 = node_config(root, "mx1", owner, site, u1)
        cfg2 = node_config(root, "mx2", owner, site, u2)
        for i in range(3):
            deliver(u1, ".INBOX.Spam", msg("spam", 100 + i))
        deliver(u1, ".INBOX.Not Spam", msg("ham", 100))
        for i in range(2):
            deliver(u2, ".INBOX.Spam", msg("spam", 200 + i))
        deliver(u2, ".INBOX.Not Spam", msg("ham", 200))
        for cfg in (cfg1, cfg2):
            out = run_cli(cfg, "run-job", "learn-spam")
            assert out.returncode == 0, out.stderr
        # both nodes see the one database: 3 + 2 spam, 1 + 1 ham
        assert stats(cfg1)["nspam"] == 5 and stats(cfg2) == stats(cfg1)
        assert stats(cfg1)["nham"] == 2
        rows = pg.psql("SELECT spam_count, ham_count FROM bayes_vars "
                       "WHERE username = 'mailopsd'", db="bayes")
        assert rows == "5|2"
        assert not (owner.home / ".spamassassin" / "bayes_toks").exists()

        before = stats(cfg1)
        backup = run_cli(cfg1, "bayes", "backup")
        assert backup.returncode == 0, backup.stderr
        files = sorted((root / "mx1" / "state" / "bayes-backups").glob("*.backup.gz"))
        assert len(files) == 1
        # more learning on mx2, then mx1 restores the shared database to the backup
        deliver(u2, ".INBOX.Spam", msg("spam", 300))
        assert run_cli(cfg2, "run-job", "learn-spam").returncode == 0
        assert stats(cfg1)["nspam"] == 6
        restored = run_cli(cfg1, "bayes", "restore", str(files[0]), "--no-safety-backup")
        assert restored.returncode == 0, restored.stderr
        assert stats(cfg2) == before

        # a damaged backup is refused and the shared database is left alone
        text = gzip.decompress(files[0].read_bytes()).decode()
        damaged = root / "damaged.backup"
        damaged.write_text(text.replace("\t", " ", 3))
        shutil.chown(damaged, owner.name)
        refused = run_cli(cfg1, "bayes", "restore", str(damaged))
        assert refused.returncode != 0
        assert stats(cfg1) == before
