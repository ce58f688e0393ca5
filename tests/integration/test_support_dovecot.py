"""Proves tests.support.dovecot/users: a TestUser logs in to a real Dovecot and sees mail."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from tests.support.dovecot import PrivateDovecot
from tests.support.users import TestUser, deliver

pytestmark = pytest.mark.integration


def test_dovecot_serves_test_users_maildir_over_imap(mail_root: Path) -> None:
    with TestUser(mail_root) as user, PrivateDovecot(mail_root) as dovecot:
        assert user.uid >= 1000 and user.name.startswith("mo") and len(user.name) <= 32
        deliver(user, "", b"Subject: inbox one\r\n\r\nfirst\r\n")
        deliver(user, ".INBOX.Spam", b"Subject: spam\r\n\r\nbuy\r\n", flags="S")
        imap = dovecot.imap(user)
        try:
            typ, data = imap.select("INBOX", readonly=True)
            assert typ == "OK" and data[0] == b"1"
            typ, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert isinstance(fetched[0], tuple) and b"inbox one" in fetched[0][1]
            typ, data = imap.select('"INBOX/Spam"', readonly=True)
            assert typ == "OK" and data[0] == b"1"
            typ, flags = imap.fetch("1", "(FLAGS)")
            assert isinstance(flags[0], bytes) and b"\\Seen" in flags[0]
            typ, boxes = imap.list()
            names = b"\n".join(b for b in boxes if isinstance(b, bytes))
            assert b"INBOX/Not Spam" in names and b"Sent" in names
        finally:
            imap.logout()
        assert dovecot.log_errors() == []
    assert dovecot.pid is None or not Path(f"/proc/{dovecot.pid}").exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(user.name)
    assert not user.home.exists()
