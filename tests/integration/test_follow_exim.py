"""A real Exim 4.96 writes the mainlog; the real follower thread (watchdog) reads it, across a
nocreate rotation done while Exim is running; the parser and the policy read Exim's own lines.

Exim logs with `+pid +millisec` and `log_timezone = true`, the most decorated timestamp form.
"""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from base64 import b64encode
from pathlib import Path

import pytest

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower
from tests.support.common import wait_until
from tests.support.exim import PrivateExim

pytestmark = pytest.mark.integration


def session(port: int, *commands: str) -> None:
    """One SMTP session sending raw commands (a misbehaving client)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.test")
        try:
            for cmd in commands:
                code, _ = smtp.docmd(cmd)
                if code == 421:
                    return
        except smtplib.SMTPServerDisconnected:  # Exim dropped us, as intended
            return


def early_talker(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"EHLO early.test\r\n")  # before the banner
        s.settimeout(10)
        while s.recv(4096):
            pass


def test_real_exim_lines_through_rotation_to_a_ban(mail_root: Path) -> None:
    got: list[str] = []
    lock = threading.Lock()

    def on_lines(lines: list[str]) -> None:
        with lock:
            got.extend(lines)

    with PrivateExim(mail_root, log_selector="+pid +millisec", variant="log_timezone = true",
                     pipelining_connect_advertise_hosts="") as exim:
        follower = LogFollower("test:exim", str(exim.mainlog), StateDB(str(mail_root / "st")),
                               on_lines, poll_interval=30.0)  # inotify must do the work
        follower.start()
        try:
            exim.mark()
            session(exim.port, "AUTH PLAIN " + b64encode(b"\0alice\0wrong").decode())
            session(exim.port, "MAIL FROM:<spam@spammer.test>", "RCPT TO:<victim@remote.test>")
            session(exim.port, *["NOOP"] * 12)
            exim.wait_for_log(r"too many nonmail commands")
            t0 = time.monotonic()
            wait_until(lambda: any("too many nonmail" in x for x in got), 5,
                       what="the follower delivering Exim's line")
            latency = time.monotonic() - t0
            # logrotate with nocreate while Exim runs: Exim makes a new mainlog at its next write
            exim.mainlog.rename(exim.mainlog.with_name("mainlog.1"))
            session(exim.port, *["FOOBAR 1", "FOOBAR 2", "FOOBAR 3", "FOOBAR 4"])
            early_talker(exim.port)
            with exim.smtp() as smtp:
                smtp.login("alice", "secret")
                smtp.sendmail("alice@example.test", ["alice@example.test"],
                              b"Subject: hi\r\n\r\nbody\r\n")
            wait_until(lambda: exim.mainlog.exists() and "A=plain_server:alice"
                       in exim.mainlog.read_text(), 15, what="Exim's arrival line")
            written = (exim.mainlog.with_name("mainlog.1").read_text().splitlines()
                       + exim.mainlog.read_text().splitlines())
            wait_until(lambda: len(got) >= len(written), 10, what="every line delivered")
        finally:
            follower.stop(5)
    assert latency < 2.0
    # across the rotation: nothing lost, nothing twice (as multisets: Exim may write two
    # identical lines within one millisecond)
    assert sorted(got) == sorted(written)
    assert any("too many unrecognized commands" in x for x in got)  # after the rotation

    cfg = parse_config({"blocker": {"ignore_self": False,
                                    "rules": {"no-rdns": {"maxretry": 5}}}}).blocker
    parser = LineParser(rule_specs(cfg))
    matches = [m for m in map(parser.parse, got) if m is not None]
    rules = sorted({m.rule for m in matches})
    assert rules == sorted(["no-rdns", "auth-failed", "relay-denied", "nonmail", "sync-error",
                            AUTHENTICATED])
    assert sum(m.rule == "nonmail" for m in matches) == 2  # nonmail and unrecognized
    assert {m.ip for m in matches} == {"127.0.0.1"}
    now = time.time()
    assert all(abs(m.when - now) < 120 for m in matches)  # zone and ms read right
    assert any(m.when % 1 for m in matches)
    policy = BanPolicy(cfg, IgnoreList(()))
    decisions = [d for d in map(policy.feed_line, got) if d is not None]
    assert [(d.ip, d.rule, d.count) for d in decisions] == [("127.0.0.1", "no-rdns", 5)]
