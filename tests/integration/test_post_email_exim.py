"""post-email through a real private Exim: a user's .forward pipes each message to
``mailopsd post-email``, which POSTs it to a real HTTP server on 127.0.0.1 (root needed)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.exim import PrivateExim
from tests.support.runnable import mailopsd_for
from tests.support.users import TestUser
from tests.unit.test_post_email_http import RecordingServer

pytestmark = pytest.mark.integration

@contextlib.contextmanager
def post_setup(root: Path, url_path: str = "/mail/{to_domain}",
               statuses: tuple[int, ...] = (200,), options: str = "") -> Iterator[tuple[
                   TestUser, PrivateExim, RecordingServer]]:
    """A user whose .forward pipes to post-email, a .forward-honouring Exim, an HTTP server."""
    with TestUser(root) as user, RecordingServer(statuses) as server, \
            PrivateExim(root, userforward=True) as exim:
        cmd = f"{mailopsd_for(user, root)} post-email {options} {server.url(url_path)}"
        user.python("import os, sys; p = os.path.expanduser('~/.forward'); "
                    "open(p, 'w').write(sys.argv[1]); os.chmod(p, 0o644)",
                    f'# Exim filter\npipe "{cmd}"\n')
        yield user, exim, server


def deliver(exim: PrivateExim, user: TestUser, message: bytes) -> None:
    """Submit ``message`` to the user; Exim delivers it in the foreground (-odi)."""
    res = exim.exim("-odi", "-f", "sender@example.net", user.address, input=message)
    assert res.returncode == 0, res.stderr


def test_messages_are_posted_decoded_from_a_forward_pipe(mail_root: Path) -> None:
    with post_setup(mail_root) as (user, exim, server):
        deliver(exim, user, (
            "From: Jörg <joerg@example.net>\nTo: Site <info@site.example>\n"
            "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\nMessage-ID: <utf8@example.net>\n"
            "Date: Tue, 24 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            "Schöne Grüße\n").encode())
        deliver(exim, user, (
            b"From: Ren\xe9 <rene@example.net>\nTo: other@site2.example\n"
            b"Subject: =?ISO-8859-1?Q?r=E9sum=E9?=\nMessage-ID: <latin1@example.net>\n"
            b"MIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-8859-1\n"
            b"Content-Transfer-Encoding: 8bit\n\nCaf\xe9 cr\xe8me br\xfbl\xe9e \xa320\n"))
        deliver(exim, user, (
            b"From: a@example.net\nTo: web@site.example\nSubject: html\nMIME-Version: 1.0\n"
            b"Content-Type: text/html; charset=utf-8\n\n"
            b"<html><body><p>First&nbsp;para</p><p>Second <b>bold</b></p></body></html>\n"))
        for _ in range(3):
            exim.wait_for_log(r"=> \|\S+ post-email .* R=userforward T=address_pipe")
        utf8, latin1, html = server.posts
        assert utf8.path == "/mail/site.example"
        assert (utf8.fields["id"], utf8.fields["subject"], utf8.fields["body"]) == \
            ("utf8@example.net", "Grüße", "Schöne Grüße\n")
        assert utf8.fields["from"] == "Jörg <joerg@example.net>"
        assert latin1.path == "/mail/site2.example"
        assert latin1.fields["subject"] == "résumé"
        assert latin1.fields["body"] == "Café crème brûlée £20\n"
        assert latin1.fields["from"] == "René <rene@example.net>"
        assert html.fields["body"] == "First\xa0para\n\nSecond bold\n"
        assert exim.queue_count() == 0
        assert not list((user.maildir / "new").iterdir())  # the pipe replaced delivery


def test_server_failure_is_retried_and_posted_exactly_once(mail_root: Path) -> None:
    with post_setup(mail_root, statuses=(503,)) as (user, exim, server):
        deliver(exim, user, b"To: x@site.example\nMessage-ID: <retry@example.net>\n"
                            b"Subject: retry\n\nplease retry\n")
        exim.wait_for_log(r"== \|\S+ post-email .*T=address_pipe defer .*"
                          r"Child process of address_pipe transport returned 75")
        assert exim.queue_count() == 1 and server.accepted() == []
        server.set_statuses([200])
        exim.run_queue(frozen=True)  # exim -qff: retry now, whatever the retry time says
        exim.wait_for_log(r"=> \|\S+ post-email .* R=userforward T=address_pipe")
        assert [p.status for p in server.posts] == [503, 200]
        [accepted] = server.accepted()
        assert (accepted.fields["id"], accepted.fields["body"]) == ("retry@example.net",
                                                                    "please retry\n")
        assert exim.queue_count() == 0
        exim.run_queue(frozen=True)  # nothing left to deliver: no second post
        assert len(server.accepted()) == 1


@pytest.mark.parametrize(("statuses", "options", "code", "reason"), [
    ((404,), "", 69, "HTTP 404 from http://127.0.0.1:"),
    ((200,), "--max-size 100", 65, "over the post-email limit of 100 bytes"),
])
def test_permanent_failure_bounces_with_the_reason(mail_root: Path, statuses: tuple[int, ...],
                                                   options: str, code: int,
                                                   reason: str) -> None:
    with post_setup(mail_root, "/in", statuses, options) as (user, exim, server):
        deliver(exim, user, b"To: x@site.example\nSubject: refused\n\n" + b"body " * 40)
        exim.wait_for_log(rf"\*\* \|\S+ post-email .*T=address_pipe: "
                          rf"Child process of address_pipe transport returned {code}")
        assert len(server.posts) == (1 if code == 69 else 0)
        # the bounce (frozen here: its sender is remote) quotes our one-line reason first
        [bounce_id] = [line.split()[2] for line in exim.exim("-bp").stdout.splitlines()
                       if "<>" in line]
        body = exim.exim("-Mvb", bounce_id).stdout
        assert any(line.startswith("mailopsd post-email: ") and reason in line
                   for line in body.splitlines()), body
        assert exim.log_text().count(" ** |") == 1  # failed once, never retried


def test_seed_header_to_in_a_pipe_is_refused_by_exim_4_96(mail_root: Path) -> None:
    """Why {to_domain} exists: the seed's "http://$header_to:/..." argument is tainted."""
    with TestUser(mail_root) as user, PrivateExim(mail_root, userforward=True) as exim:
        user.python("import os, sys; open(os.path.expanduser('~/.forward'), 'w')"
                    ".write(sys.argv[1])",
                    '# Exim filter\npipe "/bin/true http://$header_to:/index.php"\n')
        deliver(exim, user, b"To: bob@site.example\nSubject: seed\n\nx\n")
        exim.wait_for_log(r"\*\* \|/bin/true http://\$header_to:/index\.php .*"
                          r"Tainted arg 1 for address_pipe transport command: "
                          r"'http://bob@site\.example/index\.php'")
