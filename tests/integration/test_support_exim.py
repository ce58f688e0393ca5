"""Proves tests.support.exim/smtp/users work against a real Exim 4.96 (root needed)."""

from __future__ import annotations

import os
import smtplib
from base64 import b64encode
from pathlib import Path

import pytest

from tests.support.common import SupportError, scratch_root
from tests.support.exim import PrivateExim
from tests.support.exim_config import (
    COPY_TO_SENT_FILTER,
    COPY_TO_SENT_MAIN,
    COPY_TO_SENT_TRANSPORTS,
)
from tests.support.smtp import SmtpSink
from tests.support.trusted import add_trusted_config, is_trusted, remove_trusted_config
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


def test_smtp_session_logs_no_host_name_and_auth_failure(mail_root: Path) -> None:
    with PrivateExim(mail_root) as exim:
        assert exim.pid is not None and is_trusted(exim.config_path)
        with smtplib.SMTP("127.0.0.1", exim.port, timeout=10) as smtp:
            smtp.ehlo("client.example.test")
            code, _ = smtp.docmd("AUTH", "PLAIN " + b64encode(b"\0alice\0wrong").decode())
            assert code == 535
        exim.wait_for_log(r"^\S+ \S+ no host name found for IP address 127\.0\.0\.1$")
        exim.wait_for_log(r"plain_server authenticator failed for \(client\.example\.test\) "
                          r"\[127\.0\.0\.1\]: 535 Incorrect authentication data \(set_id=alice\)")


def test_authenticated_submission_lands_in_local_users_maildir(mail_root: Path) -> None:
    with TestUser(mail_root) as user, PrivateExim(mail_root) as exim:
        with exim.smtp() as smtp:
            smtp.login("alice", "secret")
            smtp.sendmail("alice@example.test", [user.address],
                          b"Subject: support test\r\nMessage-ID: <s1@example.test>\r\n"
                          b"\r\nhello\r\n")
        exim.wait_for_log(rf"=> {user.name} <{user.address}> R=local_user T=maildir_home")
        exim.wait_for_log(r"<= alice@example.test H=\(\S+\) \[127\.0\.0\.1\]:?\d* P=esmtpa "
                          r"A=\w+_server:alice")
        files = list((user.maildir / "new").iterdir())
        assert len(files) == 1
        assert files[0].stat().st_uid == user.uid
        assert b"hello" in files[0].read_bytes()


def test_remote_delivery_reaches_sink_after_a_temporary_failure(mail_root: Path) -> None:
    with SmtpSink() as sink, PrivateExim(mail_root, sink_port=sink.port) as exim:
        sink.fail_next(1)
        result = exim.exim("-odi", "-f", "alice@example.test", "bob@remote.test",
                           input="Subject: out\n\nbody\n")
        assert result.returncode == 0, result.stderr
        exim.wait_for_log(r"== bob@remote\.test R=remote_via_sink T=remote_smtp defer")
        assert exim.queue_count() == 1
        exim.run_queue()
        [msg] = sink.wait_for(1)
        assert msg.rcpt_tos == ("bob@remote.test",) and b"body" in msg.data
        assert exim.queue_count() == 0


def test_forward_filter_pipe_runs_as_the_user(mail_root: Path) -> None:
    with TestUser(mail_root) as user, PrivateExim(mail_root, userforward=True) as exim:
        out = user.home / "piped"
        forward = f'# Exim filter\npipe "/usr/bin/tee {out}"\nsave $home/Maildir/.Trash/\n'
        user.python("import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])",
                    str(user.home / ".forward"), forward)
        checked = exim.exim("-bf", str(user.home / ".forward"), input="Subject: t\n\nx\n")
        assert "Pipe message to: /usr/bin/tee" in checked.stdout, checked.stdout
        exim.exim("-odi", "-f", "alice@example.test", user.address, input="Subject: p\n\npx\n")
        exim.wait_for_log(rf"=> \|/usr/bin/tee {out} .*R=userforward T=address_pipe")
        assert out.stat().st_uid == user.uid and b"px" in out.read_bytes()
        assert len(list((user.maildir / ".Trash" / "new").iterdir())) == 1


def test_trusted_configs_line_removed_on_stop_and_on_failure(mail_root: Path) -> None:
    other = Path(f"/var/tmp/mailopsd-support-other-{os.getpid()}.conf")
    add_trusted_config(other)  # stands for another test's line: must survive
    try:
        with pytest.raises(RuntimeError), PrivateExim(mail_root) as exim:
            assert is_trusted(exim.config_path)
            raise RuntimeError("test body failed")
        assert not is_trusted(exim.config_path) and exim.pid is None
        with scratch_root() as root2:
            broken = PrivateExim(root2, variant="no_such_option = 1")
            with pytest.raises(SupportError, match="no_such_option"):
                broken.start()
            assert not is_trusted(broken.config_path)
        assert is_trusted(other)
    finally:
        remove_trusted_config(other)


def test_exim_bs_simulates_a_client_address(mail_root: Path) -> None:
    with PrivateExim(mail_root) as exim:
        res = exim.exim("-bs", "-oMa", "198.51.100.7.4242", input="EHLO x.test\r\nQUIT\r\n")
        assert res.returncode == 0 and "250-" in res.stdout
        exim.wait_for_log(r"no host name found for IP address 198\.51\.100\.7", timeout=15)


def test_copy_to_sent_reference_config_saves_a_sent_copy(mail_root: Path) -> None:
    with TestUser(mail_root) as user, PrivateExim(
            mail_root, auth_users={user.name: "pw1"}, system_filter=COPY_TO_SENT_FILTER,
            extra_transports=COPY_TO_SENT_TRANSPORTS, variant=COPY_TO_SENT_MAIN) as exim:
        with smtplib.SMTP("127.0.0.1", exim.port, timeout=10) as smtp:
            smtp.login(user.name, "pw1")
            smtp.sendmail(user.address, [user.address, "x@remote.test"],
                          b"Subject: sent copy\r\n\r\nbody\r\n")
        exim.wait_for_log(r"=> \S+/Maildir/\.Sent <system-filter> T=copy_to_sent$")
        [sent] = (user.maildir / ".Sent" / "new").iterdir()
        assert sent.stat().st_uid == user.uid and sent.stat().st_gid == user.gid
        log = (mail_root / "log" / "sent-recipients.log").read_text()
        assert f"recipients=<{user.address}, x@remote.test>" in log


def test_every_option_renders_a_config_exim_accepts(mail_root: Path) -> None:
    exim = PrivateExim(mail_root, listen=["127.0.0.1", "::1"], host_lookup_bydns=False,
                       variant="log_timezone = true", log_selector="+pid +millisec",
                       system_filter=COPY_TO_SENT_FILTER, extra_transports=COPY_TO_SENT_TRANSPORTS
                       + "\nnull_t:\n  driver = appendfile\n  file = /dev/null\n",
                       local_domains=("example.test",), relay_from_hosts=("192.0.2.0/24",),
                       sink_port=2526, pipelining_connect_advertise_hosts="",
                       retry="*  *  F,1h,1m", userforward=True,
                       extra_routers="nullr:\n  driver = accept\n  local_parts = devnull\n"
                       "  transport = null_t\n",
                       extra_acl_rcpt="  deny\n    hosts = 198.51.100.66\n")
    exim.write_files()
    assert "Exim version 4" in exim.check_config()
