"""The sent-fixer service in-process on a real test user's Maildir (Exim's writes simulated the
way the shipped filter and transport do them): ordering, new folders, restarts."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.sent.service import SentService
from tests.support.common import scratch_root, wait_until
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


class Site:
    def __init__(self, root: Path, user: TestUser) -> None:
        self.root, self.user = root, user
        self.log = root / "log" / "sent-recipients"
        self.log.parent.mkdir()
        self.config = parse_config({
            "daemon": {"state_dir": str(root / "state"), "run_dir": str(root / "run")},
            "sent": {"enabled": True, "users": [user.name], "recipients_log": str(self.log),
                     "log_poll_interval": "5s", "rescan_interval": "1h"}})
        self.state = StateDB(str(root / "state"))
        self.sent = user.maildir / ".Sent"
        self.n = 0

    def log_line(self, exim_id: str, rcpts: str) -> None:
        b = base64.b64encode
        with open(self.log, "ab") as f:
            f.write(f"2026-11-24 22:00:00 {exim_id} mailopsd-sent/1 n={rcpts.count('@')} "
                    f"sender={b(self.user.address.encode()).decode()} "
                    f"recipients={b(rcpts.encode()).decode()}\n".encode())

    def copy(self, exim_id: str) -> str:
        """Write a Sent copy as Exim's transport does: tmp/ as the user, then into new/."""
        self.n += 1
        name = f"{int(time.time())}.M{self.n}P{os.getpid()}.mail.example.test"
        for sub in ("tmp", "new", "cur"):
            (self.sent / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(self.sent / sub, self.user.uid, self.user.gid)
        os.chown(self.sent, self.user.uid, self.user.gid)
        tmp = self.sent / "tmp" / name
        tmp.write_bytes(f"Received: from [127.0.0.1]\n\tby mail.example.test with esmtpa "
                        f"(Exim 4.96)\n\tid {exim_id};\n\tTue, 24 Nov 2026 22:00:00 +0000\n"
                        f"From: {self.user.address}\nTo: bob@example.test\nSubject: s\n\n"
                        f"body\n".encode())
        os.chown(tmp, self.user.uid, self.user.gid)
        tmp.rename(self.sent / "new" / name)
        return name

    def pending(self) -> int:
        conn = self.state.connect()
        try:
            return int(conn.execute("SELECT count(*) FROM sent_pending").fetchone()[0])
        finally:
            conn.close()

    def fixed(self, exim_id: str) -> Path | None:
        for p in (self.sent / "cur").iterdir():
            if p.name.endswith(":2,S") and f"id {exim_id};".encode() in p.read_bytes():
                return p
        return None


@pytest.fixture
def site() -> Iterator[Site]:
    with scratch_root("mailopsd-sentsvc-") as root, TestUser(root) as user:
        yield Site(root, user)


def started(site: Site) -> SentService:
    service = SentService(site.config, site.state)
    service.start()
    assert service.ready.wait(15)
    return service


def test_copy_before_recipients_then_line_fixes_it_at_once(site: Site) -> None:
    service = started(site)
    try:
        site.copy("1aaaaa-000001-aa")
        wait_until(lambda: site.pending() == 1, 3, what="the copy parked as pending")
        assert site.fixed("1aaaaa-000001-aa") is None
        site.log_line("1aaaaa-000001-aa", "bob@example.test, hidden@remote.test")
        # the follower's inotify wakes it (log_poll_interval is 5 s here)
        path = wait_until(lambda: site.fixed("1aaaaa-000001-aa"), 3, what="fixed copy")
        assert b"Bcc: hidden@remote.test\n" in path.read_bytes()
    finally:
        service.stop(5)
    assert not service.alive()


def test_first_sent_message_creates_the_folder_and_is_fixed_without_a_rescan(
        site: Site) -> None:
    shutil.rmtree(site.sent)  # no Sent folder yet: Exim's transport creates it
    service = started(site)
    try:
        site.log_line("1aaaaa-000002-aa", "bob@example.test, first@remote.test")
        site.copy("1aaaaa-000002-aa")
        wait_until(lambda: site.fixed("1aaaaa-000002-aa"), 3, what="fixed copy")
    finally:
        service.stop(5)


def test_pending_copy_survives_a_service_restart(site: Site) -> None:
    service = started(site)
    site.copy("1aaaaa-000003-aa")
    wait_until(lambda: site.pending() == 1, 3, what="pending row")
    t = time.monotonic()
    service.stop(5)
    assert time.monotonic() - t < 2 and not service.alive()
    site.log_line("1aaaaa-000003-aa", "bob@example.test, later@remote.test")
    service = started(site)  # reads the line it missed, finds the pending copy
    try:
        path = wait_until(lambda: site.fixed("1aaaaa-000003-aa"), 3, what="fixed copy")
        assert b"Bcc: later@remote.test\n" in path.read_bytes()
    finally:
        service.stop(5)
