"""learn-spam never loses a message and never touches anything outside the user's Maildir.

Real sa-learn; failures are real ones (an unwritable database, a SIGKILLed sa-learn), and the
attacks are the ones a user can plant: symlinked folders and messages, hard links, foreign folders.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.learn_spam_scene import Scene, event, make_scene, messages, msg, tree
from tests.support.common import wait_until
from tests.support.users import deliver, make_maildir

pytestmark = pytest.mark.integration


@pytest.fixture
def scene(mail_root: Path) -> Iterator[Scene]:
    with make_scene(mail_root) as s:
        yield s


def fill(scene: Scene) -> dict[str, bytes]:
    """Two spam and two ham messages; returns the Maildir's messages."""
    deliver(scene.user, ".INBOX.Spam", msg("spam", 1))
    deliver(scene.user, ".INBOX.Spam", msg("spam", 2), flags="S")
    deliver(scene.user, ".INBOX.Not Spam", msg("ham", 1))
    deliver(scene.user, ".INBOX.Not Spam", msg("ham", 2), flags="F")
    return tree(scene.user.maildir)


def wrapper(scene: Scene, body: str) -> str:
    """A root-owned sa-learn wrapper script running ``body`` then the real sa-learn."""
    signals = scene.root / "signals"
    signals.mkdir(exist_ok=True)
    os.chown(signals, scene.owner.uid, scene.owner.gid)
    path = scene.root / "sa-learn-wrapper"
    path.write_text(f"#!/bin/sh\nS={signals}\n{body}\nexec /usr/bin/sa-learn \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def run_in_thread(scene: Scene, **cfg: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(scene.run(**cfg)), daemon=True)
    thread.start()
    return thread, box


def test_unwritable_database_keeps_every_message(scene: Scene) -> None:
    before = fill(scene)
    os.chown(scene.dbdir, 0, 0)  # the owner can no longer create its database there
    outcome, events = scene.run()
    assert outcome.result == "failed" and "every message kept" in (outcome.error or "")
    assert tree(scene.user.maildir) == before
    failed = event(events, "learn_spam_learn_failed")
    assert failed["klass"] == "spam" and failed["level"] == "error"
    assert "ham" not in event(events, "learn_spam_summary")["sa_learn"]  # not tried after spam
    assert not list(scene.root.glob("mailopsd-learn-spam.*"))


def test_killed_sa_learn_keeps_every_message(scene: Scene) -> None:
    before = fill(scene)
    script = wrapper(scene, 'echo $$ > "$S/pid"')
    thread, box = run_in_thread(scene, sa_learn=script)
    pidfile = scene.root / "signals" / "pid"
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30,
                   what="the sa-learn wrapper")
        pid = int(pidfile.read_text())
        # once it has exec'd sa-learn (perl takes ~0.5 s to load, so it has learned nothing)
        wait_until(lambda: b"sa-learn" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   and b"wrapper" not in Path(f"/proc/{pid}/cmdline").read_bytes(), 10,
                   what="sa-learn to start")
        os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(90)
    outcome, events = box[0]
    assert outcome.result == "failed"
    assert "-9" in event(events, "learn_spam_learn_failed")["error"]
    assert tree(scene.user.maildir) == before
    assert not list(scene.root.glob("mailopsd-learn-spam.*"))


def test_cancel_while_sa_learn_runs_keeps_every_message(scene: Scene) -> None:
    before = fill(scene)
    script = wrapper(scene, 'touch "$S/started"\n'
                            'i=0; while [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done')
    cancel = threading.Event()
    thread, box = run_in_thread(scene, sa_learn=script, cancel=cancel)
    try:
        wait_until(lambda: (scene.root / "signals" / "started").exists(), 30, what="sa-learn")
        cancel.set()  # what a daemon stop or the job's timeout does
    finally:
        thread.join(30)
    outcome, events = box[0]
    assert outcome.result == "cancelled"
    assert tree(scene.user.maildir) == before
    assert event(events, "learn_spam_summary")["cancelled"] is True
    assert not list(scene.root.glob("mailopsd-learn-spam.*"))


def test_messages_arriving_or_renamed_during_the_run_are_handled_right(scene: Scene) -> None:
    spam = deliver(scene.user, ".INBOX.Spam", msg("spam", 1))
    deliver(scene.user, ".INBOX.Spam", msg("spam", 2))
    ham = deliver(scene.user, ".INBOX.Not Spam", msg("ham", 1))
    script = wrapper(scene, 'touch "$S/started"\n'
                            'i=0; while [ ! -e "$S/go" ] && [ $i -lt 1500 ]; do '
                            'sleep 0.02; i=$((i+1)); done')
    thread, box = run_in_thread(scene, sa_learn=script)
    signals = scene.root / "signals"
    try:
        wait_until(lambda: (signals / "started").exists(), 30, what="the first sa-learn")
        # between the snapshot and the clean-up: new mail arrives, a client marks mail read
        late_spam = deliver(scene.user, ".INBOX.Spam", msg("spam", 9))
        late_ham = deliver(scene.user, ".INBOX.Not Spam", msg("ham", 9))
        os.rename(spam, spam.parent.parent / "cur" / f"{spam.name}:2,S")
        os.rename(ham, ham.parent.parent / "cur" / f"{ham.name}:2,R")
    finally:
        (signals / "go").touch()
        thread.join(90)
    outcome, events = box[0]
    assert outcome.result == "ok", outcome.error
    assert tree(scene.user.maildir / ".INBOX.Spam") == {f"new/{late_spam.name}": msg("spam", 9)}
    assert tree(scene.user.maildir / ".INBOX.Not Spam") == {f"new/{late_ham.name}": msg("ham", 9)}
    assert messages(scene.user.maildir) == [(msg("ham", 1), "cur", "RS")]
    summary = event(events, "learn_spam_summary")
    assert (summary["spam"], summary["spam_removed"], summary["ham_restored"]) == (2, 2, 1)


def test_symlink_and_hard_link_attacks_leave_everything_outside_untouched(scene: Scene) -> None:
    user, md = scene.user, scene.user.maildir
    victim = scene.root / "victim"  # a root-owned Maildir-looking directory outside
    for sub in ("cur", "new", "tmp"):
        (victim / sub).mkdir(parents=True)
    (victim / "new" / "1.M1P1.victim").write_bytes(b"precious")
    make_maildir(user, (".Rootowned",))
    deliver(user, ".Rootowned", msg("ham", 7))
    os.chown(md / ".Rootowned", 0, 0)
    deliver(user, ".INBOX.Not Spam", msg("ham", 1))
    # planted by the user: folders that are symlinks, a message that is a symlink
    user.python(
        "import os, shutil, sys; md = sys.argv[1]\n"
        "shutil.rmtree(md + '/.INBOX.Spam'); os.symlink(sys.argv[2], md + '/.INBOX.Spam')\n"
        "os.symlink('/etc', md + '/.Evil')\n"
        "os.symlink('/etc/passwd', md + '/.INBOX.Not Spam/new/2.M1P1.evil')\n",
        str(md), str(victim))
    # a hard link to a root-owned file (the kernel's protected_hardlinks stops users; root plants
    # it). Not /etc/passwd itself: useradd/userdel elsewhere on the machine replace that file, and
    # its old inode's link count drops under the test.
    secret = scene.root / "root-secret"
    secret.write_bytes(b"root:secret\n")
    secret.chmod(0o600)
    hard = md / ".INBOX.Not Spam" / "cur" / "3.M1P1.evil:2,"
    os.link(secret, hard)
    fd = os.open(hard, os.O_RDONLY)
    try:
        passwd_before = (os.fstat(fd).st_nlink, os.pread(fd, 1 << 20, 0))
        outcome, events = scene.run(spam_folders=[".INBOX.Spam", ".Evil"],
                                    ham_folders=[".INBOX.Not Spam", ".Rootowned"])
        assert outcome.result == "ok", outcome.error
        assert (os.fstat(fd).st_nlink, os.pread(fd, 1 << 20, 0)) == passwd_before
        assert os.stat(hard).st_ino == os.fstat(fd).st_ino  # left where it was
    finally:
        os.close(fd)
        hard.unlink()
    assert (victim / "new" / "1.M1P1.victim").read_bytes() == b"precious"
    assert os.path.islink(md / ".INBOX.Not Spam" / "new" / "2.M1P1.evil")
    assert os.path.islink(md / ".INBOX.Spam") and os.path.islink(md / ".Evil")
    assert list(tree(md / ".Rootowned").values()) == [msg("ham", 7)]
    assert messages(md) == [(msg("ham", 1), "cur", "S")]
    # every event carries JOB=learn-spam, also those logged from the per-user worker threads
    assert {e.get("job") for e in events if e["event"].startswith("learn_spam")} == {"learn-spam"}
    skipped = {e["folder"] for e in events if e["event"] == "learn_spam_folder_skipped"}
    assert skipped == {".INBOX.Spam", ".Evil", ".Rootowned"}
    refused = event(events, "learn_spam_messages_refused")
    assert (refused["symlink"], refused["foreign_owner"]) == (1, 1)
    summary = event(events, "learn_spam_summary")
    assert summary["sa_learn"] == {"ham": {"listed": 1, "learned": 1, "examined": 1}}
