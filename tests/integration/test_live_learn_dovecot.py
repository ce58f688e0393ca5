"""Live learning end to end: real Dovecot + Pigeonhole with the shipped IMAPSieve pieces, real
IMAP clients (imaplib), real ``mailopsd learn-enqueue`` run by the sieve pipe as the user, the
real daemon's live-learn service and the real sa-learn: the Bayes counts change by exactly what
was moved."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.livelearn_scene import LiveScene, live_scene, message
from tests.support.common import wait_until

pytestmark = pytest.mark.integration
TRAIN_TIMEOUT = 90.0  # 2 shared cores: sa-learn alone takes 1-3 s per call here


def _select(imap, box: str) -> int:  # type: ignore[no-untyped-def]
    typ, data = imap.select(f'"{box}"')
    assert typ == "OK", (box, data)
    return int(data[0])


def _ok(res) -> None:  # type: ignore[no-untyped-def]
    assert res[0] == "OK", res


def _wait_counts(scene: LiveScene, want: tuple[int, int]) -> None:
    wait_until(lambda: not scene.pending() and scene.magic() == want, TRAIN_TIMEOUT,
               interval=0.5, what=f"Bayes counts {want}, spool empty")


def test_moves_into_and_out_of_spam_train_exactly_what_moved(mail_root: Path) -> None:
    with live_scene(mail_root) as scene:
        user = scene.users[0]
        scene.fill_inbox(user, 5)
        assert scene.dovecot is not None
        with scene.daemon() as daemon:
            imap = scene.dovecot.imap(user)
            try:
                _ok(imap.create("Junk"))
                assert _select(imap, "INBOX") == 5
                _ok(imap.uid("MOVE", "1", '"INBOX/Spam"'))          # UID MOVE -> spam
                _ok(imap.copy("1", '"INBOX/Spam"'))                   # COPY (seq 1 = uid 2)
                _ok(imap._simple_command("MOVE", "1", '"Junk"'))    # MOVE (uid 2) -> spam
                _ok(imap.uid("MOVE", "3", "Trash"))                   # INBOX -> Trash: nothing
                _wait_counts(scene, (2, 0))  # 2 distinct messages; the copy is the same one
                assert _select(imap, "INBOX/Spam") == 2
                _ok(imap.uid("COPY", "1:*", "Junk"))                  # within Spam: nothing
                _ok(imap.uid("MOVE", "1", "Trash"))                   # Spam -> Trash: nothing
                assert _select(imap, "Junk") == 3
                _ok(imap.uid("MOVE", "1", "INBOX"))                   # Junk -> INBOX: ham
            finally:
                imap.logout()
            _wait_counts(scene, (1, 1))  # relearned: one spam less, one ham more
            learned = [e for e in daemon.events() if e["event"] == "live_learn_learned"]
            assert {(e["user"], e["class"]) for e in learned} == {(user.name, "spam"),
                                                                   (user.name, "ham")}
            assert sum(e["count"] for e in learned if e["class"] == "ham") == 1
            # every entry the pipe queued, learned or superseded by a later one of the same
            # message: 3 into Spam (UID MOVE, COPY, MOVE), 1 out; Trash and Spam->Spam: none
            queued = {k: sum(e["count"] + e["superseded"] for e in learned if e["class"] == k)
                      for k in ("spam", "ham")}
            assert queued == {"spam": 3, "ham": 1}
        assert scene.dovecot.log_errors() == []
        assert scene.pending() == []


def _move_all_to_spam(scene: LiveScene, user, box: str = "INBOX/Spam") -> int:  # type: ignore[no-untyped-def]
    assert scene.dovecot is not None
    imap = scene.dovecot.imap(user)
    try:
        count = _select(imap, "INBOX")
        _ok(imap.uid("MOVE", "1:*", f'"{box}"'))
    finally:
        imap.logout()
    return count


def test_moves_while_the_daemon_is_down_are_trained_when_it_is_back(mail_root: Path) -> None:
    with live_scene(mail_root) as scene:
        user = scene.users[0]
        with scene.daemon():
            pass  # the daemon creates the spool; now it is down
        scene.fill_inbox(user, 4)
        assert _move_all_to_spam(scene, user) == 4
        assert len(scene.pending()) == 4
        queue = scene.queue()
        assert queue["users"][user.name]["pending"] == 4
        assert queue["users"][user.name]["oldest_age_seconds"] >= 0
        from tests.support.daemon import run_cli

        table = run_cli(scene.config, "learn-queue")
        assert table.returncode == 0 and "4 pending in" in table.stdout
        [row] = [ln.split() for ln in table.stdout.splitlines() if ln.startswith(user.name)]
        assert row[1:5] == [str(user.uid), "4", "4", "0"]
        assert scene.magic() == (0, 0)
        with scene.daemon() as daemon:
            _wait_counts(scene, (4, 0))
            daemon.wait_event("live_learn_learned", user=user.name, count=4)
        assert scene.dovecot is not None and scene.dovecot.log_errors() == []


SLOW_SA_LEARN = """#!/bin/sh
# sa-learn that, while FLAG exists, first says where it is and waits (to be killed mid-batch)
if [ -e @FLAG@ ]; then echo $$ > @MARK@; sleep 60; fi
exec /usr/bin/sa-learn "$@"
"""


def test_kill_9_during_a_batch_loses_nothing_and_counts_once(mail_root: Path) -> None:
    flags = mail_root / "flags"
    flags.mkdir(mode=0o777)
    os.chmod(flags, 0o777)
    wrapper = mail_root / "slow-sa-learn"
    wrapper.write_text(SLOW_SA_LEARN.replace("@FLAG@", str(flags / "slow"))
                       .replace("@MARK@", str(flags / "mark")))
    wrapper.chmod(0o755)
    with live_scene(mail_root, sa_learn=str(wrapper)) as scene:
        user = scene.users[0]
        scene.fill_inbox(user, 3)
        (flags / "slow").touch()
        daemon = scene.daemon()
        try:
            _move_all_to_spam(scene, user)
            mark = flags / "mark"
            wait_until(lambda: mark.exists() and mark.read_text().strip(), 60,
                       what="sa-learn started")
            daemon.signal(signal.SIGKILL)
            daemon.proc.wait(timeout=10)
        finally:
            daemon.stop()
            if mark.exists() and mark.read_text().strip():
                # the wrapper we made (its own session: sa-learn runs in a new one) and its sleep
                os.killpg(int(mark.read_text()), signal.SIGKILL)
        assert len(scene.pending()) == 3
        (flags / "slow").unlink()
        with scene.daemon() as daemon:
            _wait_counts(scene, (3, 0))
            daemon.wait_event("live_learn_learned", user=user.name, count=3)
        assert scene.dovecot is not None and scene.dovecot.log_errors() == []
        leftovers = [p for p in mail_root.iterdir() if p.name.startswith("mailopsd-live-learn.")]
        assert leftovers == []


def test_a_user_over_the_daily_limit_is_counted_not_learned(mail_root: Path) -> None:
    with live_scene(mail_root, live_learn={"daily_limit": 2}) as scene:
        user = scene.users[0]
        scene.fill_inbox(user, 4)
        with scene.daemon() as daemon:
            _move_all_to_spam(scene, user)
            _wait_counts(scene, (2, 0))
            daemon.wait_event("live_learn_refused", user=user.name, reason="daily_limit",
                              count=2)
            # now learn-enqueue itself refuses early (the daemon published today's count)
            scene.fill_inbox(user, 1, tag="later")
            _move_all_to_spam(scene, user)
            daemon.wait_event("live_learn_refused", user=user.name, reason="daily_limit",
                              by="learn-enqueue", count=1)
            assert scene.queue()["users"][user.name]["refused"] == 3
            assert scene.magic() == (2, 0)
        assert scene.dovecot is not None and scene.dovecot.log_errors() == []


def test_a_10_mb_message_is_refused_whole_without_a_broken_pipe(mail_root: Path) -> None:
    with live_scene(mail_root) as scene:
        user = scene.users[0]
        assert scene.dovecot is not None
        with scene.daemon() as daemon:
            imap = scene.dovecot.imap(user, timeout=60)
            try:
                _ok(imap.create("Junk"))
                big = message(1, size=10 * 1024 * 1024)
                _ok(imap.append("Junk", None, None, big))  # APPEND into Junk: spam, too big
                _ok(imap.append("Junk", None, None, message(2)))
            finally:
                imap.logout()
            _wait_counts(scene, (1, 0))
            daemon.wait_event("live_learn_refused", user=user.name, reason="size",
                              by="learn-enqueue")
            assert scene.queue()["users"][user.name]["refused"] == 1
        assert scene.dovecot.log_errors() == []


def test_two_users_moving_at_once_each_train_their_own(mail_root: Path) -> None:
    with live_scene(mail_root, users=2) as scene:
        a, b = scene.users
        scene.fill_inbox(a, 5)
        scene.fill_inbox(b, 4, kind="ham")  # distinct messages; b's go to Spam too
        errors: list[BaseException] = []

        def mover(user) -> None:  # type: ignore[no-untyped-def]
            try:
                assert scene.dovecot is not None
                imap = scene.dovecot.imap(user)
                try:
                    _select(imap, "INBOX")
                    for uid in range(1, 6 if user is a else 5):
                        _ok(imap.uid("MOVE", str(uid), '"INBOX/Spam"'))
                        time.sleep(0.05)
                finally:
                    imap.logout()
            except BaseException as exc:
                errors.append(exc)

        with scene.daemon() as daemon:
            threads = [threading.Thread(target=mover, args=(u,)) for u in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == []
            _wait_counts(scene, (9, 0))
            learned = [e for e in daemon.events() if e["event"] == "live_learn_learned"]
            per_user = {u.name: sum(e["count"] for e in learned if e["user"] == u.name)
                        for u in (a, b)}
            assert per_user == {a.name: 5, b.name: 4}
            assert {e["uid"] for e in learned} == {a.uid, b.uid}
        assert scene.dovecot is not None and scene.dovecot.log_errors() == []


def test_the_daily_learn_spam_job_skips_what_was_learned_live(mail_root: Path) -> None:
    from tests.support.daemon import events, run_cli
    from tests.support.users import deliver

    with live_scene(mail_root) as scene:
        user = scene.users[0]
        scene.fill_inbox(user, 2)
        with scene.daemon():
            _move_all_to_spam(scene, user)
            _wait_counts(scene, (2, 0))
        deliver(user, ".INBOX.Spam", message(7, tag="delivered-straight-to-spam"))
        res = run_cli(scene.config, "run-job", "learn-spam")
        assert res.returncode == 0, res.stderr
        [summary] = [e for e in events(res.stderr) if e.get("event") == "learn_spam_summary"]
        assert summary["spam"] == 3 and summary["spam_removed"] == 3
        assert summary["sa_learn"]["spam"]["listed"] == 1
        assert summary["sa_learn"]["spam"]["learned_live"] == 2
        assert scene.magic() == (3, 0)
        spam = user.maildir / ".INBOX.Spam"
        assert not list((spam / "cur").iterdir()) and not list((spam / "new").iterdir())
