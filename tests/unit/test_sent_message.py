"""Header parsing, Received ids, recipients-log lines and the Bcc: header for copy-to-Sent."""

from __future__ import annotations

import base64
import tempfile

import pytest

from mailopsd.sent.addresses import Address
from mailopsd.sent.message import (
    HeaderError,
    bcc_field,
    is_submission,
    parse_received,
    read_header,
)
from mailopsd.sent.reclog import RecipientsLineError, parse_line

EXIM_COPY = (b"Return-path: <alice@example.test>\n"
             b"Delivery-date: Tue, 24 Nov 2026 22:32:18 +0000\n"
             b"Received: from [127.0.0.1] (helo=id 1fake0-000000-00)\n"
             b"\tby mail.example.test with esmtpa (Exim 4.96)\n"
             b"\t(envelope-from <\"x id 1fake1-000000-00\"@example.test>)\n"
             b"\tid 1xVz3i-0004Li-0s;\n"
             b"\tTue, 24 Nov 2026 22:32:18 +0000\n"
             b"Received: from outer by other.test with esmtp id 1other-000000-00;\n"
             b"\tTue, 24 Nov 2026 22:32:17 +0000\n"
             b"From: alice@example.test\n"
             b"To: bob@example.test,\n ext1@remote.test\n"
             b"Cc: carol@remote.test\n"
             b"Subject: hi\n"
             b"\n"
             b"body line\n\nmore body\n")


def header_of(data: bytes, limit: int = 1 << 20):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return read_header(f.fileno(), limit)


def test_top_received_gives_exim_id_not_helo_or_envelope_from_tricks() -> None:
    h = header_of(EXIM_COPY)
    assert h.received_id() == ("1xVz3i-0004Li-0s", "esmtpa")
    assert EXIM_COPY[h.body_offset:] == b"\nbody line\n\nmore body\n"
    assert [a.key for a in h.visible_recipients()] == [
        "bob@example.test", "ext1@remote.test", "carol@remote.test"]
    assert not h.has("bcc")


def test_exim_497_longer_ids_and_no_received_header() -> None:
    assert parse_received("from x by mail.test with esmtpsa id 1rUdmh-00000001JAn-2T6x;"
                          " date") == ("1rUdmh-00000001JAn-2T6x", "esmtpsa")
    h = header_of(b"From: a@b.test\nSubject: appended by a client\n\nbody\n")
    assert h.received_id() == (None, None)


def test_submission_protocols() -> None:
    assert all(is_submission(p) for p in ("esmtpa", "esmtpsa", "utf8esmtpsa", "local",
                                          "local-esmtp"))
    assert not any(is_submission(p) for p in ("esmtp", "esmtps", "smtp", None, "spam-scanned"))


def test_crlf_message_and_header_only_message() -> None:
    h = header_of(b"Received: by h with local id 1abcde-000000-aa;\r\nTo: a@b.test\r\n\r\nbody\r\n")
    assert h.newline == b"\r\n" and h.received_id()[0] == "1abcde-000000-aa"
    assert h.raw.endswith(b"To: a@b.test\r\n")
    only = header_of(b"Subject: no body")
    assert only.raw == b"Subject: no body" and only.body_offset == len(b"Subject: no body")


def test_header_larger_than_limit_is_refused() -> None:
    with pytest.raises(HeaderError):
        header_of(b"X-Big: " + b"a" * 300_000 + b"\n\nbody", limit=100_000)


def test_bcc_field_folds_long_lists_and_uses_the_message_newline() -> None:
    addrs = [Address(f"recipient{n:02d}", "example.test") for n in range(12)]
    field = bcc_field(addrs, b"\n").decode()
    lines = field.split("\n")[:-1]
    assert lines[0].startswith("Bcc: recipient00@example.test,")
    assert all(len(line) <= 78 for line in lines) and len(lines) > 2
    assert all(line.startswith(" ") for line in lines[1:])
    assert field.replace("\n ", " ").count("@") == 12
    assert bcc_field(addrs[:1], b"\r\n") == b"Bcc: recipient00@example.test\r\n"


def test_bcc_field_refuses_crlf_injection() -> None:
    with pytest.raises(ValueError):
        bcc_field([Address("evil\r\nX-Injected: 1", "x.test")], b"\n")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_recipients_log_line_round_trip() -> None:
    rcpts = 'bob@example.test, "doe, john"@remote.test'
    line = (f"2026-11-24 22:32:18 1xVz3i-0004Li-0s mailopsd-sent/1 n=2 "
            f"sender={b64('alice@example.test')} recipients={b64(rcpts)}\n")
    entry = parse_line(line)
    assert entry is not None
    assert (entry.exim_id, entry.sender, entry.count) == ("1xVz3i-0004Li-0s",
                                                           "alice@example.test", 2)
    assert [a.local for a in entry.recipients()] == ["bob", "doe, john"]
    assert entry.sender_local_part() == "alice"


def test_recipients_log_other_and_broken_lines() -> None:
    assert parse_line("2026-11-24 22:32:18 something else entirely") is None
    with pytest.raises(RecipientsLineError):
        parse_line("2026-11-24 1xVz3i-0004Li-0s mailopsd-sent/1 n=1 sender=!! recipients=")
    with pytest.raises(RecipientsLineError):
        parse_line("1xVz3i-0004Li-0s mailopsd-sent/1 n=1 sender=YQ recipients=YQ==")


def test_utf8_addresses_survive() -> None:
    line = (f"2026-11-24 22:32:18 1xVz3i-0004Li-0s mailopsd-sent/1 n=1 "
            f"sender={b64('alice@example.test')} recipients={b64('jörg@exämple.test')}")
    entry = parse_line(line)
    assert entry is not None and entry.recipients()[0].render() == "jörg@exämple.test"
