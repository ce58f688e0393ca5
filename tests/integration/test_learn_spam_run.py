"""learn-spam with the real sa-learn: learning, clean-up, dry run, the CLI.

The Bayes database belongs to a test user the test creates (standing in for Debian-exim).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.learn_spam_scene import (
    Scene,
    event,
    make_scene,
    messages,
    msg,
    toml,
    tree,
)
from tests.support.users import TestUser, deliver, make_maildir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scene(mail_root: Path) -> Iterator[Scene]:
    with make_scene(mail_root) as s:
        yield s


def test_learns_into_the_owners_database_and_cleans_exactly_the_snapshot(scene: Scene) -> None:
    user = scene.user
    make_maildir(user, (".My Junk",))
    deliver(user, ".INBOX.Spam", msg("spam", 1))
    deliver(user, ".INBOX.Spam", msg("spam", 2), flags="F")
    deliver(user, ".My Junk", msg("spam", 3))
    trashed = deliver(user, ".INBOX.Spam", msg("spam", 4), flags="ST")
    big = deliver(user, ".INBOX.Spam", msg("spam", 5, size=3000))
    ham1 = deliver(user, ".INBOX.Not Spam", msg("ham", 1), mtime=1_700_000_000)
    deliver(user, ".INBOX.Not Spam", msg("ham", 2), flags="F")
    original = deliver(user, "", msg("ham", 3), flags="S")
    copy = user.maildir / ".INBOX.Not Spam" / "cur" / "1795560000.M1P1.copy:2,"
    os.link(original, copy)  # what Dovecot's IMAP COPY does: a hard link owned by the user

    outcome, events = scene.run(bayes_path=False, spam_folders=[".INBOX.Spam", ".My Junk"],
                                max_size=2000)

    assert outcome.result == "ok", outcome.error
    # the database spamd would read: the owner's HOME, owned by the owner, nothing of root's
    db = scene.owner.home / ".spamassassin"
    assert {p.stat().st_uid for p in db.iterdir()} == {scene.owner.uid}
    assert scene.magic(str(db / "bayes")) == (3, 3)
    assert sorted(tree(user.maildir / ".INBOX.Spam")) == sorted(
        str(p.relative_to(user.maildir / ".INBOX.Spam")) for p in (trashed, big))
    assert tree(user.maildir / ".My Junk") == {}
    assert tree(user.maildir / ".INBOX.Not Spam") == {}
    # ham back in the INBOX, read, other flags kept; the hard-link copy is not doubled
    assert messages(user.maildir) == [(msg("ham", 1), "cur", "S"), (msg("ham", 2), "cur", "FS"),
                                      (msg("ham", 3), "cur", "S")]
    moved = [p for p in (user.maildir / "cur").iterdir() if p.read_bytes() == msg("ham", 1)]
    assert moved[0].stat().st_mtime == 1_700_000_000  # IMAP INTERNALDATE kept
    assert ham1.name not in moved[0].name  # a fresh base name: Dovecot sees a new message
    assert not list(scene.root.glob("mailopsd-learn-spam.*"))
    summary = event(events, "learn_spam_summary")
    assert summary["per_user"][user.name] == {
        "spam": 3, "ham": 3, "skipped": {"trashed": 1, "oversize": 1},
        "spam_deleted": 3, "ham_moved": 2, "ham_deduped": 1}
    assert summary["sa_learn"]["spam"] == {"listed": 3, "learned": 3, "examined": 3}
    assert summary["job"] == "learn-spam" and summary["duration"] > 0


def test_empty_folders_are_not_a_failure_and_run_no_sa_learn(scene: Scene) -> None:
    outcome, events = scene.run()
    assert outcome.result == "ok", outcome.error
    assert not [e for e in events if e["event"].startswith("command_")]
    assert event(events, "learn_spam_summary")["spam"] == 0


def test_dry_run_changes_nothing(scene: Scene) -> None:
    for n in range(3):
        deliver(scene.user, ".INBOX.Spam", msg("spam", n))
    deliver(scene.user, ".INBOX.Not Spam", msg("ham", 1), flags="F")
    before = tree(scene.user.maildir)
    outcome, events = scene.run(dry_run=True)
    assert outcome.result == "ok", outcome.error
    assert tree(scene.user.maildir) == before
    assert list(scene.dbdir.iterdir()) == []
    assert not [e for e in events if e["event"].startswith("command_")]
    summary = event(events, "learn_spam_summary")
    assert (summary["dry_run"], summary["spam"], summary["ham"]) == (True, 3, 1)
    assert not list(scene.root.glob("mailopsd-learn-spam.*"))


def test_cli_run_job_exits_0_and_logs_the_summary_for_each_user(scene: Scene) -> None:
    with TestUser(scene.root, prefix="lsu") as other:
        deliver(scene.user, ".INBOX.Spam", msg("spam", 1))
        deliver(other, ".INBOX.Spam", msg("spam", 2))
        deliver(other, ".INBOX.Not Spam", msg("ham", 2))
        cfg = scene.config(users=[scene.user.name, other.name], spam_action="trash")
        path = scene.root / "mailopsd.toml"
        path.write_text(toml(cfg))
        res = subprocess.run([sys.executable, "-m", "mailopsd", "-c", str(path), "run-job",
                              "learn-spam"], capture_output=True, text=True, timeout=120,
                             cwd=REPO, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
        summary = event(events, "learn_spam_summary")
        assert summary["job"] == "learn-spam"
        assert summary["per_user"] == {
            scene.user.name: {"spam": 1, "ham": 0, "spam_moved": 1},
            other.name: {"spam": 1, "ham": 1, "spam_moved": 1, "ham_moved": 1}}
        trash = tree(other.maildir / ".Trash")
        assert list(trash.values()) == [msg("spam", 2)]
        assert all(k.startswith("cur/") and k.endswith(":2,S") for k in trash)
        assert tree(other.maildir / ".INBOX.Spam") == {}
