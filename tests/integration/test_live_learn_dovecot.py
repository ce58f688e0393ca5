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
        assert scene.dovecot.log_errors() == []
        assert scene.pending() == []
