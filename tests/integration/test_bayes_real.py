"""bayes-backup, restore and bayes-stats with the real sa-learn, on a database owned by a test
user (the role Debian-exim plays on a server), through run_job and the real CLI."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mailopsd.core.config import parse_config
from mailopsd.core.locks import FileLock
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job
from mailopsd.spam.bayes_db import parse_magic
from tests.support.journald import private_journald
from tests.support.users import TestUser

pytestmark = pytest.mark.integration

WORDS = {"spam": ["cheap", "pills", "offer", "winner", "prize", "click", "casino", "loan"],
         "ham": ["meeting", "agenda", "report", "project", "lunch", "invoice", "minutes"]}


@dataclass
class Owner:
    """The Bayes owner plus the scratch paths of one test."""

    user: TestUser
    root: Path
    config: Path

    @property
    def dbdir(self) -> Path:
        return self.user.home / ".spamassassin"

    def corpus(self, kind: str, count: int, seed: int) -> Path:
        """``count`` distinct messages of one class in a directory the owner can read."""
        rng = random.Random(seed)
        folder = self.root / f"{kind}-{seed}"
        folder.mkdir(mode=0o755)
        for i in range(count):
            body = " ".join(f"{rng.choice(WORDS[kind])}{rng.randint(0, 9999)}" for _ in range(40))
            (folder / f"{i}.eml").write_text(
                f"From: s{seed}-{i}@example.test\nTo: u@example.test\nSubject: {kind} {seed} "
                f"{i}\nMessage-ID: <{kind}{seed}.{i}@example.test>\n\n{body}\n")
            (folder / f"{i}.eml").chmod(0o644)
        return folder

    def learn(self, spam: int, ham: int, seed: int) -> None:
        for kind, count in (("spam", spam), ("ham", ham)):
            self.user.run(["sa-learn", f"--{kind}", str(self.corpus(kind, count, seed))],
                          timeout=120)

    def magic(self) -> tuple[int, int, int]:
        m = parse_magic(self.user.run(["sa-learn", "--dump", "magic"]).stdout.decode())
        return m.nspam, m.nham, m.ntokens

    def db_files(self) -> dict[str, tuple[int, int]]:
        return {p.name: (os.lstat(p).st_uid, os.lstat(p).st_mtime_ns)
                for p in self.dbdir.iterdir()} if self.dbdir.exists() else {}

    def run(self, job: str, **settings: Any) -> tuple[RunOutcome, list[dict[str, Any]]]:
        cfg = parse_config(self.settings(**{job: settings}))
        with capture_logs() as events:
            outcome = run_job(job, cfg, StateDB(cfg.daemon.state_dir))
        return outcome, events

    def settings(self, **jobs: Any) -> dict[str, Any]:
        return {"daemon": {"state_dir": str(self.root / "state"),
                           "run_dir": str(self.root / "run")},
                "spamassassin": {"bayes_owner": self.user.name, "bayes_lock_wait": "1s"},
                "jobs": jobs}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ``mailopsd`` command (a child process: its own logging set-up)."""
        return subprocess.run([sys.executable, "-m", "mailopsd", "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def owner(mail_root: Path) -> Iterator[Owner]:
    with TestUser(mail_root, maildir=False) as user:
        config = mail_root / "mailopsd.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "{mail_root}/state"\nrun_dir = "{mail_root}/run"\n'
            f'[logging]\ntarget = "json"\n[spamassassin]\nbayes_owner = "{user.name}"\n')
        yield Owner(user, mail_root, config)


def backups(owner: Owner) -> list[Path]:
    return sorted((owner.root / "state" / "bayes-backups").glob("bayes-*.backup.gz"))


def test_backup_restore_round_trip_gives_equal_magic(owner: Owner) -> None:
    owner.learn(spam=40, ham=30, seed=1)
    saved = owner.magic()
    outcome, events = owner.run("bayes-backup")
    assert outcome.result == "ok", outcome.error
    [backup] = backups(owner)
    written = next(e for e in events if e["event"] == "bayes_backup_written")
    assert (written["nspam"], written["nham"], written["ntokens"]) == saved
    assert os.stat(backup).st_mode & 0o777 == 0o600
    dump = gzip.decompress(backup.read_bytes()).decode()
    assert dump.startswith("v\t3\tdb_version") and dump.count("\nt\t") == saved[2]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=backup.parent,
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0 and f"{backup.name}: OK" in check.stdout

    owner.learn(spam=10, ham=25, seed=2)  # the database moves on after the backup
    changed = owner.magic()
    assert changed != saved
    res = owner.cli("bayes", "restore", str(backup))
    assert res.returncode == 0, res.stderr
    assert "checksum: ok" in res.stdout
    assert owner.magic() == saved
    # the state it replaced was saved first, and nothing in the database is root's
    [safety] = [p for p in backups(owner) if "pre-restore" in p.name]
    assert gzip.decompress(safety.read_bytes()).decode().count("\nt\t") == changed[2]
    assert {uid for uid, _ in owner.db_files().values()} == {owner.user.uid}


def test_truncated_backup_is_refused_and_the_database_kept(owner: Owner) -> None:
    owner.learn(spam=30, ham=30, seed=3)
    dump = owner.user.run(["sa-learn", "--backup"]).stdout
    lines = dump.splitlines(keepends=True)
    cut = b"".join(lines[: len(lines) * 2 // 3])  # ends cleanly between two token lines
    plain = owner.root / "cut.backup"
    plain.write_bytes(cut)
    plain.chmod(0o644)
    # the hazard: sa-learn itself restores the cut file with exit 0 and fewer tokens
    scratch = f"{owner.user.home}/scratch/bayes"
    owner.user.run(["mkdir", "-p", f"{owner.user.home}/scratch"])
    res = owner.user.run(["sa-learn", "--dbpath", scratch, "--restore", str(plain)], check=False)
    assert res.returncode == 0
    shrunk = parse_magic(owner.user.run(["sa-learn", "--dbpath", scratch, "--dump", "magic"])
                         .stdout.decode())
    assert shrunk.ntokens < dump.count(b"\nt\t")

    before = owner.magic()
    res = owner.cli("bayes", "backup")  # the same run_job path as the scheduler
    assert res.returncode == 0 and "backup written:" in res.stdout, res.stderr
    [good] = backups(owner)
    damaged = owner.root / "elsewhere"
    damaged.mkdir()
    half = damaged / good.name
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    listed = owner.root / "listed"  # a copy cut short next to a manifest that lists it
    listed.mkdir()
    (listed / good.name).write_bytes(good.read_bytes()[:-8])
    (listed / "SHA256SUMS").write_bytes((good.parent / "SHA256SUMS").read_bytes())
    files = owner.db_files()
    for path, why in ((plain, "truncated"), (half, "gzip"), (listed / good.name, "sha256")):
        res = owner.cli("bayes", "restore", str(path))
        assert res.returncode == 1, res.stdout
        assert why in res.stderr and "mailopsd:" in res.stderr
    assert owner.magic() == before and owner.db_files() == files  # not even touched
    assert [p for p in backups(owner) if "pre-restore" in p.name] == []


def test_backup_waits_for_learn_and_skips_a_missing_database(owner: Owner) -> None:
    outcome, events = owner.run("bayes-backup")
    assert outcome.result == "ok" and outcome.counts["db_exists"] is False
    assert "bayes_db_missing" in [e["event"] for e in events] and backups(owner) == []
    assert not (owner.dbdir / "bayes_toks").exists()  # no empty database made by us
    lock = FileLock(str(owner.root / "run" / "locks" / "bayes.lock"))  # learn-spam's lock
    lock.acquire()
    try:
        outcome, _ = owner.run("bayes-backup")
    finally:
        lock.release()
    assert outcome.result == "failed" and "busy" in (outcome.error or "")


def test_bayes_stats_to_journald_and_cli(owner: Owner) -> None:
    outcome, events = owner.run("bayes-stats")
    assert outcome.result == "ok" and outcome.counts == {"db_exists": False}
    assert "bayes_db_missing" in [e["event"] for e in events]
    res = owner.cli("bayes", "stats", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["exists"] is False

    owner.learn(spam=30, ham=20, seed=4)
    nspam, nham, ntokens = owner.magic()
    sentence = f"{nspam} spams and {nham} hams have been processed with {ntokens} tokens."
    with private_journald() as journal:
        owner.config.write_text(owner.config.read_text().replace(
            'target = "json"', f'target = "journald"\njournal_socket = "{journal.socket_path}"'))
        res = owner.cli("run-job", "bayes-stats")
        assert res.returncode == 0, res.stderr
        [row] = journal.query("EVENT=bayes_stats", "JOB=bayes-stats")
        assert (row["NSPAM"], row["NHAM"], row["NTOKENS"]) == (str(nspam), str(nham),
                                                               str(ntokens))
        assert row["SENTENCE"] == sentence and row["PRIORITY"] == "6"
        [warn] = journal.query("EVENT=bayes_not_active")
        assert warn["PRIORITY"] == "4" and "below 200" in warn["DETAIL"]
    res = owner.cli("bayes", "stats")
    assert res.returncode == 0 and sentence in res.stdout and "warning:" in res.stdout


def test_every_kind_of_damaged_dump_is_refused_untouched(owner: Owner) -> None:
    """A gzip-valid .gz of a dump cut between two lines, an empty file, another file's bytes
    and a dump of another database format: each refused with its reason, the database files
    not even opened for writing (same mtimes), no safety backup taken."""
    owner.learn(spam=12, ham=10, seed=5)
    dump = owner.user.run(["sa-learn", "--backup"]).stdout
    lines = dump.splitlines(keepends=True)
    seen_at = next(i for i, ln in enumerate(lines) if ln.startswith(b"s\t"))
    cases = {
        "cut-in-tokens.backup.gz": (gzip.compress(b"".join(lines[: seen_at // 2])),
                                    "truncated"),
        "cut-in-seen.backup.gz": (gzip.compress(b"".join(lines[: seen_at + 3])), "truncated"),
        "empty.backup": (b"", "empty"),
        "other.backup.gz": (gzip.compress(Path("/etc/services").read_bytes()), "db_version"),
        "v2.backup": (dump.replace(b"v\t3\tdb_version", b"v\t2\tdb_version", 1),
                      "another Bayes database format"),
    }
    before, files = owner.magic(), owner.db_files()
    for name, (data, why) in cases.items():
        path = owner.root / name
        path.write_bytes(data)
        path.chmod(0o644)
        res = owner.cli("bayes", "restore", str(path))
        assert res.returncode == 1, (name, res.stdout)
        assert why in res.stderr, (name, res.stderr)
    assert owner.magic() == before and owner.db_files() == files
    assert [p for p in backups(owner) if "pre-restore" in p.name] == []
