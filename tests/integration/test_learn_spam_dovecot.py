"""learn-spam under a live Dovecot: what an IMAP client sees before and after a run."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.learn_spam_scene import Scene, make_scene, msg
from tests.support.dovecot import PrivateDovecot
from tests.support.users import deliver

pytestmark = pytest.mark.integration


@pytest.fixture
def scene(mail_root: Path) -> Iterator[Scene]:
    with make_scene(mail_root) as s:
        yield s


def flags(imap: imaplib.IMAP4, box: str) -> list[tuple[bytes, bool]]:
    """(subject, seen) of every message in ``box``."""
    typ, data = imap.select(box)
    assert typ == "OK"
    if data[0] == b"0":
        return []
    typ, fetched = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = []
    for part in fetched:
        if isinstance(part, tuple):
            out.append((part[1].strip(), b"\\Seen" in part[0]))
    return sorted(out)


def test_imap_client_sees_ham_back_in_inbox_read_and_spam_gone(scene: Scene) -> None:
    user = scene.user
    deliver(user, "", msg("ham", 1))  # the client will COPY this one (Dovecot hard-links it)
    deliver(user, "", msg("ham", 2))  # ... and MOVE this one
    with PrivateDovecot(scene.root) as dovecot:
        imap = dovecot.imap(user)
        try:
            imap.select("INBOX")
            assert imap.copy("1", '"INBOX/Not Spam"')[0] == "OK"
            assert imap.uid("MOVE", "2", '"INBOX/Not Spam"')[0] == "OK"
            imap.append('"INBOX/Spam"', "", imaplib.Time2Internaldate(1_700_000_000),
                        msg("spam", 1).replace(b"\n", b"\r\n"))
            assert len(flags(imap, '"INBOX/Not Spam"')) == 2

            outcome, _ = scene.run()
            assert outcome.result == "ok", outcome.error

            assert flags(imap, '"INBOX/Spam"') == []
            assert flags(imap, '"INBOX/Not Spam"') == []
            # the moved message is back and read; the copied one was already there (unchanged)
            assert flags(imap, "INBOX") == [(b"Subject: ham number 1", False),
                                            (b"Subject: ham number 2", True)]
        finally:
            imap.logout()
        assert dovecot.log_errors() == []
