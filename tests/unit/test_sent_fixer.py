"""The copy-to-Sent fixer on a real Maildir of the running user (no root, no Exim)."""

from __future__ import annotations

import base64
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.core.users import Account
from mailopsd.sent.fixer import ALREADY, FIXED, GONE, IGNORED, PENDING, UNSAFE, SentFixer
from mailopsd.sent.scan import expire, scan_user

EXIM_ID = "1xVz3i-0004Li-0s"


def copy_bytes(exim_id: str = EXIM_ID, extra: str = "", body: bytes = b"the body\n",
               proto: str = "esmtpa") -> bytes:
    return (f"Return-path: <me@example.test>\n"
            f"Received: from [127.0.0.1]\n\tby mail.example.test with {proto} (Exim 4.96)\n"
            f"\t(envelope-from <me@example.test>)\n\tid {exim_id};\n"
            f"\tTue, 24 Nov 2026 22:32:18 +0000\n"
            f"From: me@example.test\nTo: bob@example.test\nCc: carol@remote.test\n{extra}"
            f"Subject: hi\n\n").encode() + body


def line(exim_id: str, sender: str, rcpts: str) -> str:
    b = base64.b64encode
    return (f"2026-11-24 22:32:18 {exim_id} mailopsd-sent/1 n={rcpts.count('@')} "
            f"sender={b(sender.encode()).decode()} recipients={b(rcpts.encode()).decode()}")


class Box:
    def __init__(self, root: Path) -> None:
        pw = pwd.getpwuid(os.getuid())
        self.account = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, str(root / "home"))
        self.sent = root / "home" / "Maildir" / ".Sent"
        for sub in ("new", "cur", "tmp"):
            (self.sent / sub).mkdir(parents=True)
        self.cfg = cfg = parse_config({"daemon": {"state_dir": str(root / "state"),
                                       "run_dir": str(root / "run")},
                            "sent": {"enabled": True, "pending_hold": "1h"}})
        self.conn = StateDB(str(root / "state")).connect()
        self.fixer = SentFixer(cfg, self.conn)
        self.fixer.accounts = {self.account.name: self.account}
        self.me = f"{self.account.name}@example.test"

    def deliver(self, data: bytes, sub: str = "new", name: str = "1795559538.M1P1.mail",
                mtime: float = 1_700_000_000.0) -> Path:
        path = self.sent / sub / name
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        return path

    def handle(self, sub: str, name: str) -> str:
        return self.fixer.handle(self.account, sub, name)

    def files(self, sub: str) -> list[Path]:
        return sorted((self.sent / sub).iterdir())


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path)
    yield b
    b.conn.close()


def test_copy_gets_bcc_seen_flag_new_name_same_mtime_and_body(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, 'bob@example.test, carol@remote.test, '
                                                  '"doe, john"@remote.test, Dave@remote.test')])
    old = box.deliver(copy_bytes(body=b"body\n\nwith a blank line\n"))
    assert box.handle("new", old.name) == FIXED
    assert not old.exists() and box.files("new") == [] and box.files("tmp") == []
    [new] = box.files("cur")
    assert new.name.endswith(":2,S") and not new.name.startswith(old.name)
    data = new.read_bytes()
    assert data.endswith(b'Subject: hi\nBcc: "doe, john"@remote.test, Dave@remote.test\n'
                         b'\nbody\n\nwith a blank line\n')
    assert new.stat().st_mtime == 1_700_000_000.0
    assert f",S={len(data)}:" in new.name
    assert box.handle("cur", new.name) == ALREADY


def test_copy_first_then_recipients(box: Box) -> None:
    old = box.deliver(copy_bytes())
    assert box.handle("new", old.name) == PENDING
    ids = box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    assert ids == [EXIM_ID]
    box.fixer.fix_pending_for(ids)
    [new] = box.files("cur")
    assert b"Bcc: x@remote.test\n" in new.read_bytes()
    assert box.fixer.store.pending() == []
    # the filter logs again on a retried delivery: no second entry
    assert box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test")]) == []


def test_dovecot_moved_it_to_cur_first_flags_kept(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    moved = box.deliver(copy_bytes(), "cur", "1795559538.M1P1.mail:2,F")
    assert box.handle("new", "1795559538.M1P1.mail") == FIXED
    [new] = box.files("cur")
    assert new.name.endswith(":2,FS") and not moved.exists()


def test_no_bcc_needed_only_renamed_keeping_base_name(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, carol@remote.test")])
    old = box.deliver(copy_bytes())
    assert box.handle("new", old.name) == FIXED
    assert [p.name for p in box.files("cur")] == [old.name + ":2,S"]
    assert (box.sent / "cur" / (old.name + ":2,S")).read_bytes() == copy_bytes()


def test_existing_bcc_header_is_not_duplicated(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    old = box.deliver(copy_bytes(extra="Bcc: x@remote.test\n"))
    assert box.handle("new", old.name) == FIXED
    [new] = box.files("cur")
    assert new.read_bytes().count(b"Bcc:") == 1


def test_client_append_and_foreign_sender_are_left_alone(box: Box) -> None:
    appended = box.deliver(b"From: me@example.test\nTo: a@b.test\n\nbody\n", name="1.M2P2.c")
    assert box.handle("new", appended.name) == IGNORED and appended.exists()
    box.fixer.store_lines([line("1other-000000-aa", "bob@example.test", "me@example.test")])
    moved_in = box.deliver(copy_bytes("1other-000000-aa"), name="1.M3P3.c")
    assert box.handle("new", moved_in.name) == IGNORED and moved_in.exists()
    received = box.deliver(copy_bytes("1inbox-000000-aa", proto="esmtp"), name="1.M4P4.c")
    assert box.handle("new", received.name) == IGNORED and box.fixer.store.pending() == []


def test_symlink_and_hard_link_are_not_followed(box: Box, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(copy_bytes())
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    (box.sent / "new" / "1.M5P5.evil").symlink_to(secret)
    assert box.handle("new", "1.M5P5.evil") == UNSAFE
    os.link(secret, box.sent / "new" / "1.M6P6.hard")
    assert box.handle("new", "1.M6P6.hard") == UNSAFE
    assert secret.read_bytes() == copy_bytes() and box.files("cur") == []


def test_vanished_copy(box: Box) -> None:
    assert box.handle("new", "1.M7P7.gone") == GONE


def test_scan_finds_backlog_and_overdue_copies_warn_once(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    box.deliver(copy_bytes(), name="1.M8P8.a")
    box.deliver(copy_bytes("1nolog-000000-aa"), name="1.M9P9.b")
    counts = scan_user(box.fixer, box.account, since=0)
    assert counts == {FIXED: 1, PENDING: 1}
    assert [p.name for p in box.files("new")] == ["1.M9P9.b"]  # batch finished: old unlinked
    assert len(box.files("cur")) == 1 and box.files("tmp") == []
    [p] = box.fixer.store.pending()
    expire(box.fixer, now=p.first_seen + 3601)
    assert box.fixer.store.overdue(p.first_seen + 7200) == []  # warned once only


def test_memory_stays_flat_for_a_50_mb_message(box: Box) -> None:
    box.fixer.store_lines([line(EXIM_ID, box.me, "bob@example.test, x@remote.test")])
    body = b"0123456789abcdef" * 64 + b"\n"
    path = box.deliver(copy_bytes(body=b""))
    with open(path, "ab") as f:
        for _ in range(50 * 1024 * 1024 // len(body)):
            f.write(body)
    size = path.stat().st_size
    rss = psutil.Process().memory_info().rss
    assert box.handle("new", path.name) == FIXED
    assert psutil.Process().memory_info().rss - rss < 8 * 1024 * 1024
    [new] = box.files("cur")
    assert new.stat().st_size == size + len(b"Bcc: x@remote.test\n")



def test_pending_copy_survives_a_restart(box: Box, tmp_path: Path) -> None:
    old = box.deliver(copy_bytes())
    assert box.handle("new", old.name) == PENDING
    box.conn.close()
    # a restart: new connection, new fixer, same state database
    box.conn = StateDB(str(tmp_path / "state")).connect()
    box.fixer = SentFixer(box.cfg, box.conn)
    box.fixer.accounts = {box.account.name: box.account}
    [pending] = box.fixer.store.pending()
    assert pending.exim_id == EXIM_ID and pending.name == old.name
    box.fixer.fix_pending_for(box.fixer.store_lines([line(EXIM_ID, box.me, "x@remote.test")]))
    [new] = box.files("cur")
    assert b"Bcc: x@remote.test\n" in new.read_bytes() and box.fixer.store.pending() == []
