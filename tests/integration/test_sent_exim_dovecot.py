"""copy-to-Sent end to end: a private Exim 4.96 with the SHIPPED filter and transport, the real
``mailopsd`` daemon / ``sent-fixup`` command, and a real Dovecot answering IMAP."""

from __future__ import annotations

import email
import hashlib
import imaplib
import os
import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

import pytest

from tests.support.common import scratch_root
from tests.support.daemon import MailopsdProcess, run_cli, write_config
from tests.support.dovecot import PrivateDovecot
from tests.support.exim import PrivateExim
from tests.support.journald import private_journald
from tests.support.smtp import SmtpSink
from tests.support.users import TestUser

pytestmark = pytest.mark.integration

ETC = Path(__file__).resolve().parents[2] / "etc" / "exim4"


@dataclass
class Env:
    root: Path
    alice: TestUser
    bob: TestUser
    sink: SmtpSink
    exim: PrivateExim
    dovecot: PrivateDovecot
    config: Path

    @property
    def sent(self) -> Path:
        return self.alice.maildir / ".Sent"


def shipped_filter() -> str:
    """The shipped filter with only its log path adapted to the test root."""
    text = (ETC / "copy-to-sent.filter").read_text()
    assert "/var/log/exim4/sent-recipients" in text
    return text.replace("/var/log/exim4/sent-recipients", "@ROOT@/log/sent-recipients")


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with scratch_root("mailopsd-sent-") as root, TestUser(root) as alice, \
            TestUser(root) as bob, SmtpSink() as sink, \
            PrivateExim(root, system_filter=shipped_filter(),
                        extra_transports=(ETC / "transport-copy-to-sent.conf").read_text(),
                        variant="system_filter_directory_transport = mailopsd_copy_to_sent",
                        auth_users={alice.name: "secret"}, sink_port=sink.port) as exim, \
            PrivateDovecot(root) as dovecot:
        config = write_config(root, sent={"enabled": True, "users": [alice.name],
                                          "recipients_log": str(root / "log" /
                                                                "sent-recipients")})
        yield Env(root, alice, bob, sink, exim, dovecot, config)


def send(env: Env, to: list[str], cc: list[str], bcc: list[str], body: bytes,
         subject: str = "hello") -> str:
    """Submit as alice (AUTH PLAIN); return the Exim id of the message."""
    head = (f"From: {env.alice.address}\r\nTo: {', '.join(to)}\r\n"
            + (f"Cc: {', '.join(cc)}\r\n" if cc else "")
            + f"Subject: {subject}\r\nMessage-ID: <{os.urandom(6).hex()}@client.test>\r\n\r\n")
    mark = env.exim.mark()
    with smtplib.SMTP("127.0.0.1", env.exim.port, timeout=60) as smtp:
        smtp.login(env.alice.name, "secret")
        smtp.sendmail(env.alice.address, to + cc + bcc, head.encode() + body)
    m = env.exim.wait_for_log(rf"^\S+ \S+ (\S+) <= {re.escape(env.alice.address)} ", since=mark)
    exim_id = m.group(1)
    env.exim.wait_for_log(rf"{exim_id} => \S+/\.Sent <system-filter> T=mailopsd_copy_to_sent",
                          since=mark, timeout=30)
    return exim_id


def sent_files(env: Env, sub: str) -> list[Path]:
    return sorted((env.sent / sub).iterdir())


def fixed_copy(env: Env, exim_id: str) -> Path:
    for path in sent_files(env, "cur"):
        with open(path, "rb") as f:
            if f"id {exim_id};".encode() in f.read(4096) and ":2," in path.name and \
                    "S" in path.name.rsplit(":2,", 1)[1]:
                return path
    raise AssertionError(f"no \\Seen copy of {exim_id} in Sent/cur")


def assert_no_bounce(env: Env) -> None:
    log = env.exim.log_text()
    assert not re.search(r"^\S+ \S+ \S+ \*\* ", log, re.M), log
    assert " <= <> " not in log, log  # no delivery-failure report to the sender


def test_submission_to_cc_bcc_is_fixed_and_seen_over_imap(env: Env) -> None:
    imap = env.dovecot.imap(env.alice)
    try:
        imap.select("Sent")  # Dovecot indexes the folder before the copy arrives
        with MailopsdProcess(env.config) as daemon:
            to = [env.bob.address, "ext1@remote.test"]
            cc = ["carol@remote.test"]
            bcc = ["dave@remote.test", '"doe, john"@remote.test']
            body = b"Line one\r\n\r\nFrom here on, the body.\r\n"
            exim_id = send(env, to, cc, bcc, body)
            ev = daemon.wait_event("sent_fixed", timeout=20, exim_id=exim_id)
            assert ev["user"] == env.alice.name and ev["bcc_count"] == 2
        imap.noop()
        typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", "@client.test")
        uids = data[0].split()
        assert typ == "OK" and len(uids) == 1  # the unfixed copy is gone for IMAP too
        typ, parts = imap.uid("FETCH", uids[0], "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        flags = parts[0][0].decode()
        raw = parts[0][1]
        assert "\\Seen" in flags
        msg = email.message_from_bytes(raw)
        assert msg.get_all("Bcc") and len(msg.get_all("Bcc")) == 1
        assert [a for _n, a in getaddresses(msg.get_all("Bcc"))] == bcc
        assert raw.split(b"\r\n\r\n", 1)[1] == body
        assert env.sink.wait_for(1)[-1].rcpt_tos  # the world got it; no Bcc: leaked to it
        assert all(b"\nBcc:" not in m.data for m in env.sink.messages)
        assert env.dovecot.log_errors() == []
        assert sent_files(env, "new") == [] and sent_files(env, "tmp") == []
        assert_no_bounce(env)
    finally:
        imap.logout()


def test_backlog_after_downtime_is_fixed_by_sent_fixup_and_by_daemon_start(env: Env) -> None:
    first = send(env, [env.bob.address], [], ["x1@remote.test"], b"first\r\n", "backlog 1")
    assert any(f"id {first};".encode() in p.read_bytes() for p in sent_files(env, "new"))
    with private_journald() as jd:
        cfg = write_config(env.root, sent={"enabled": True, "users": [env.alice.name],
                                           "recipients_log": str(env.root / "log" /
                                                                 "sent-recipients")},
                           logging={"target": "journald", "journal_socket": jd.socket_path})
        res = run_cli(cfg, "sent-fixup", "--user", env.alice.name, "--json")
        assert res.returncode == 0, res.stderr
        assert '"fixed": 1' in res.stdout
        [row] = jd.query("EVENT=sent_fixed", f"EXIM_ID={first}")
        assert (row["USER"], row["BCC_COUNT"]) == (env.alice.name, "1")
    write_config(env.root, sent={"enabled": True, "users": [env.alice.name],
                                 "recipients_log": str(env.root / "log" / "sent-recipients")})
    assert b"Bcc: x1@remote.test\n" in fixed_copy(env, first).read_bytes()
    second = send(env, [env.bob.address], [], ["x2@remote.test"], b"second\r\n", "backlog 2")
    with MailopsdProcess(env.config) as daemon:
        daemon.wait_event("sent_fixed", timeout=20, exim_id=second)
    assert b"Bcc: x2@remote.test\n" in fixed_copy(env, second).read_bytes()
    assert_no_bounce(env)


def test_copy_dovecot_moved_to_cur_and_flagged_first_keeps_its_flags(env: Env) -> None:
    exim_id = send(env, [env.bob.address], [], ["late@remote.test"], b"read early\r\n", "early")
    imap = env.dovecot.imap(env.alice)
    try:
        imap.select("Sent")  # Dovecot moves new/ to cur/ before mailopsd ever ran
        _typ, data = imap.uid("SEARCH", "SUBJECT", "early")
        [uid] = data[0].split()
        imap.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
        assert [p for p in sent_files(env, "new") if f"id {exim_id};".encode() in p.read_bytes()] \
            == []
        res = run_cli(env.config, "sent-fixup", "--json")
        assert res.returncode == 0 and '"fixed": 1' in res.stdout, res.stdout + res.stderr
        imap.noop()
        _typ, data = imap.uid("SEARCH", "SUBJECT", "early")
        [new_uid] = data[0].split()
        assert new_uid != uid  # a new file: an expunge and a new UID, never changed in place
        _typ, parts = imap.uid("FETCH", new_uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (BCC)])")
        assert "\\Seen" in parts[0][0].decode() and "\\Flagged" in parts[0][0].decode()
        assert parts[0][1].strip() == b"Bcc: late@remote.test"
        assert fixed_copy(env, exim_id).name.endswith(":2,FS")
        assert env.dovecot.log_errors() == []
    finally:
        imap.logout()


def test_local_sendmail_submission_is_copied_and_fixed(env: Env) -> None:
    # `sendmail -t` run by alice; root stands in for her with -oMai (her login name), since a
    # private config cannot be used by an unprivileged caller
    mark = env.exim.mark()
    msg = (f"From: {env.alice.address}\nTo: {env.bob.address}\nBcc: cron-copy@remote.test\n"
           f"Subject: from the shell\n\nlocal body\n")
    res = env.exim.exim("-odi", "-oMai", env.alice.name, "-f", env.alice.address, "-t",
                        input=msg)
    assert res.returncode == 0, res.stderr
    m = env.exim.wait_for_log(r"^\S+ \S+ (\S+) <= \S+ U=root P=local ", since=mark)
    exim_id = m.group(1)
    env.exim.wait_for_log(rf"{exim_id} => \S+/\.Sent <system-filter>", since=mark)
    res = run_cli(env.config, "sent-fixup", "--user", env.alice.name, "--json")
    assert res.returncode == 0 and '"fixed": 1' in res.stdout, res.stdout + res.stderr
    data = fixed_copy(env, exim_id).read_bytes()
    assert b"with local" in data and b"\nBcc: cron-copy@remote.test\n" in data
    assert_no_bounce(env)


def test_symlink_planted_in_sent_new_is_not_followed(env: Env) -> None:
    secret = env.root / "root-only-secret"
    fake_id = "1zzzzz-000000-zz"
    secret.write_bytes(f"Received: from x by mail.example.test with esmtpa id {fake_id};\n"
                       f"To: a@remote.test\n\nTOP-SECRET\n".encode())
    secret.chmod(0o600)
    import base64

    b64 = base64.b64encode
    with open(env.root / "log" / "sent-recipients", "ab") as log:
        log.write(b"2026-11-24 22:00:00 " + fake_id.encode() + b" mailopsd-sent/1 n=2 sender="
                  + b64(env.alice.address.encode()) + b" recipients="
                  + b64(b"a@remote.test, b@remote.test") + b"\n")
    with MailopsdProcess(env.config) as daemon:
        daemon.wait_event("sent_fixer_ready", timeout=15)
        env.alice.run(["ln", "-s", str(secret), str(env.sent / "new" / "1795560000.M1P1.evil")])
        ev = daemon.wait_event("sent_copy_unsafe", timeout=20)
        assert ev["user"] == env.alice.name
    assert (env.sent / "new" / "1795560000.M1P1.evil").is_symlink()
    assert secret.stat().st_mode & 0o777 == 0o600 and b"TOP-SECRET" in secret.read_bytes()
    for sub in ("new", "cur", "tmp"):
        for path in sent_files(env, sub):
            if not path.is_symlink():
                assert b"TOP-SECRET" not in path.read_bytes()
    (env.sent / "new" / "1795560000.M1P1.evil").unlink()


def test_20_mb_message_is_streamed_and_intact(env: Env) -> None:
    line = b"0123456789" * 7 + b"\r\n"
    body = line * (20 * 1024 * 1024 // len(line))
    with MailopsdProcess(env.config) as daemon:
        exim_id = send(env, [env.bob.address], [], [env.alice.address], body, "big")
        daemon.wait_event("sent_fixed", timeout=40, exim_id=exim_id)
    data = fixed_copy(env, exim_id).read_bytes()
    head, stored = data.split(b"\n\n", 1)
    assert f"\nBcc: {env.alice.address}".encode() in head
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body.replace(b"\r\n", b"\n")).digest()
    assert env.dovecot.log_errors() == []
    assert_no_bounce(env)


def test_imap_fetch_still_works_after_all(env: Env) -> None:
    imap: imaplib.IMAP4 = env.dovecot.imap(env.alice)
    try:
        typ, data = imap.select("Sent", readonly=True)
        assert typ == "OK" and int(data[0]) >= 4
        typ, data = imap.fetch("1:*", "(FLAGS RFC822.SIZE)")
        assert typ == "OK" and all(b"\\Seen" in d for d in data if isinstance(d, bytes))
    finally:
        imap.logout()
    assert env.dovecot.log_errors() == []
