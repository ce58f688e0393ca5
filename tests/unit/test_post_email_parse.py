"""post-email's message side: field extraction, charsets, HTML bodies, {to_domain} and URLs."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailopsd.forward.message import extract_fields, parse_message, to_domain
from mailopsd.forward.post_email import (
    EX_DATAERR,
    EX_USAGE,
    PostEmailError,
    build_url,
    read_message,
    redact_url,
)


def fields_of(raw: bytes) -> dict[str, str]:
    return extract_fields(parse_message(raw))


def test_plain_utf8_message_gives_every_field() -> None:
    raw = ("From alice@example.test Tue Nov 24 10:00:00 2026\n"
           "From: Alice <alice@example.test>\nTo: Bob <bob@site.example>\n"
           "Subject: Grüße\nMessage-ID: <m1@example.test>\n"
           "Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
           "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
           "Hallo Bob, schöne Grüße.\n").encode()
    assert fields_of(raw) == {
        "id": "m1@example.test", "date": "Tue, 24 Nov 2026 10:00:00 +0000",
        "from": "Alice <alice@example.test>", "to": "Bob <bob@site.example>",
        "subject": "Grüße", "body": "Hallo Bob, schöne Grüße.\n"}


def test_mbox_from_line_is_not_taken_for_a_header() -> None:
    f = fields_of(b"From MAILER-DAEMON Tue Nov 24 10:00:00 2026\nSubject: s\n\nbody\n")
    assert f["subject"] == "s" and f["from"] == "" and f["body"] == "body\n"


def test_latin1_quoted_printable_body_decoded_in_its_charset() -> None:
    raw = (b"Subject: =?ISO-8859-1?Q?caf=E9?=\nContent-Type: text/plain; charset=ISO-8859-1\n"
           b"Content-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me br=FBl=E9e\n")
    f = fields_of(raw)
    assert f["subject"] == "café" and f["body"] == "Café crème brûlée\n"


def test_latin1_8bit_body_and_raw_8bit_header() -> None:
    raw = (b"Subject: r\xe9sum\xe9\nContent-Type: text/plain; charset=iso-8859-1\n"
           b"Content-Transfer-Encoding: 8bit\n\nna\xefve\n")
    f = fields_of(raw)
    assert f["subject"] == "résumé" and f["body"] == "naïve\n"


def test_base64_koi8r_body() -> None:
    import base64

    body = base64.b64encode("Привет".encode("koi8-r")).decode()
    raw = (f"Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: base64\n\n"
           f"{body}\n").encode()
    assert fields_of(raw)["body"] == "Привет"


def test_unknown_or_missing_charset_falls_back_without_crashing() -> None:
    f = fields_of(b"Content-Type: text/plain; charset=x-no-such-charset\n\nna\xefve \xe9t\xe9\n")
    assert f["body"] == "naïve été\n"  # not UTF-8 -> Windows-1252
    f = fields_of("Content-Type: text/plain\n\nnaïve\n".encode())
    assert f["body"] == "naïve\n"  # undeclared but valid UTF-8


def test_alternative_prefers_plain_text() -> None:
    raw = (b"Content-Type: multipart/alternative; boundary=XX\n\n--XX\n"
           b"Content-Type: text/html; charset=utf-8\n\n<p>html version</p>\n--XX\n"
           b"Content-Type: text/plain; charset=utf-8\n\nplain version\n--XX--\n")
    assert fields_of(raw)["body"] == "plain version"  # the newline belongs to the boundary


def test_html_only_message_is_converted_to_text() -> None:
    raw = (b"Content-Type: text/html; charset=windows-1252\n\n<html><head><style>p{}</style>"
           b"</head><body><p>Hello&nbsp;<b>W\xf6rld</b></p><p>Second &amp; last\x85</p>"
           b"<script>x()</script></body></html>\n")
    assert fields_of(raw)["body"] == "Hello\xa0Wörld\n\nSecond & last…\n"


def test_attachment_is_not_the_body() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
           b"Content-Type: text/plain; charset=utf-8\n\nthe text\n--B\n"
           b"Content-Type: text/plain; name=a.txt\nContent-Disposition: attachment; "
           b"filename=a.txt\n\nattached\n--B--\n")
    assert fields_of(raw)["body"] == "the text"
    only_attachment = (b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
                       b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
                       b"JVBERi0=\n--B--\n")
    assert fields_of(only_attachment)["body"] == ""


def test_missing_headers_are_empty_strings() -> None:
    assert fields_of(b"\nbody only\n") == {"id": "", "date": "", "from": "", "to": "",
                                           "subject": "", "body": "body only\n"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_hostile_bytes_never_crash_extraction(data: bytes) -> None:
    f = fields_of(data)
    assert set(f) == {"id", "date", "from", "to", "subject", "body"}
    assert all(isinstance(v, str) for v in f.values())


@pytest.mark.parametrize(("to", "allowed", "expected"), [
    ("Bob <bob@Site.Example.ORG>", (), "site.example.org"),
    ("a@first.example, b@second.example", (), "first.example"),
    ("a@first.example, b@second.example", ("second.example",), "second.example"),
    ("a@first.example", ("second.example",), None),
    ("x@127.0.0.1", (), None),
    ("x@[192.0.2.1]", (), None),
    ("x@localhost", (), None),
    ("x@evil.example/path?q", (), None),
    ("undisclosed-recipients:;", (), None),
    ("", (), None),
])
def test_to_domain_takes_only_dns_names(to: str, allowed: tuple[str, ...],
                                        expected: str | None) -> None:
    msg = parse_message(f"To: {to}\n\nx\n".encode())
    assert to_domain(msg, allowed) == expected


def test_build_url_fills_to_domain_anywhere() -> None:
    assert build_url("https://{to_domain}/index.php", "site.example") == \
        "https://site.example/index.php"
    assert build_url("http://127.0.0.1:8080/in/{to_domain}?a=1&b=2", "s.example") == \
        "http://127.0.0.1:8080/in/s.example?a=1&b=2"
    assert build_url("https://fixed.example/mail", None) == "https://fixed.example/mail"


@pytest.mark.parametrize(("template", "domain", "code"), [
    ("https://{to_domain}/x", None, EX_DATAERR),
    ("https://{to-domain}/x", "a.example", EX_USAGE),
    ("https://{header_to}/x", "a.example", EX_USAGE),
    ("ftp://a.example/x", None, EX_USAGE),
    ("a.example/x", None, EX_USAGE),
    ("http:///nohost", None, EX_USAGE),
])
def test_build_url_refusals_carry_their_exit_code(template: str, domain: str | None,
                                                  code: int) -> None:
    with pytest.raises(PostEmailError) as info:
        build_url(template, domain)
    assert info.value.exit_code == code


def test_redact_url_hides_credentials_and_query() -> None:
    assert redact_url("https://user:pw@site.example:8443/p/x?token=s3cret") == \
        "https://site.example:8443/p/x?..."


def test_read_message_refuses_oversize_after_draining_stdin() -> None:
    stream = io.BytesIO(b"x" * 200_000)
    with pytest.raises(PostEmailError) as info:
        read_message(stream, 100_000)
    assert info.value.exit_code == EX_DATAERR
    assert "200000 bytes" in str(info.value) and "max_message_size" in str(info.value)
    assert stream.read() == b""  # drained: Exim's writer sees no broken pipe
    assert read_message(io.BytesIO(b"y" * 100_000), 100_000) == b"y" * 100_000
