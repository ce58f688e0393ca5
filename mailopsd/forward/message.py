"""post-email's reading of a message: header fields, the text body, the To domain.

Everything here takes hostile input (whoever sent the mail wrote it) and never raises on it:
bad charsets, raw 8-bit headers, broken MIME and HTML all end up as best-effort text.
"""

from __future__ import annotations

import codecs
import email.policy
import ipaddress
import re
from collections.abc import Sequence
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


def parse_message(raw: bytes) -> EmailMessage:
    """Parse the message, dropping the mbox framing Exim's pipe transport adds by default.

    That is a leading "From " line (message_prefix) and one extra trailing newline
    (message_suffix).
    """
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        if raw.endswith(b"\n\n"):
            raw = raw[:-1]
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def header_text(msg: Message, name: str) -> str:
    """A header as readable text (RFC 2047 decoded, whitespace folded); "" if absent.

    Raw 8-bit bytes in a header (not allowed, but common) are decoded as UTF-8 if they are,
    else in the charset the message declares for its text, else as Windows-1252. Never raises.
    """
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return ""
    if isinstance(raw, str) and any("\udc80" <= c <= "\udcff" for c in raw):
        data = raw.encode("ascii", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_fallback(data, _declared_charset(msg))
        return " ".join(_decode_words(text).split())
    try:
        value = msg.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception:  # the email package's header parser has crashed on hostile input
        return " ".join(str(raw).split())


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words in ``text`` (leaves it as is if they are broken)."""
    from email.header import decode_header, make_header

    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, UnicodeError):
        return text


def _declared_charset(msg: Message) -> str | None:
    for part in msg.walk():
        charset = part.get_content_charset()
        if charset and part.get_content_maintype() == "text":
            return charset
    return None


def _decode_fallback(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except LookupError:
            pass
    return data.decode("cp1252", errors="replace")


def decode_part(part: Message) -> str:
    """A text part's content as str in its declared charset (bad bytes replaced).

    No or an unknown charset: UTF-8 if it decodes, else Windows-1252 (the usual reality of
    undeclared 8-bit mail).
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    if charset:
        try:
            codecs.lookup(charset)
            return payload.decode(charset, errors="replace")
        except (LookupError, ValueError):
            pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_fallback(payload, None)


def body_text(msg: EmailMessage) -> str:
    """The message's text: its text/plain body, else its text/html body converted; else ""."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # malformed MIME structure: treat as having no body
        part = None
    if part is None:
        return ""
    text = decode_part(part)
    if part.get_content_subtype() == "html":
        from mailopsd.forward.html_text import html_to_text

        return html_to_text(text)
    return text


def to_domain(msg: EmailMessage, allowed: Sequence[str] = ()) -> str | None:
    """The domain of the first To address (first one in ``allowed``, if given), lower-cased.

    Only DNS names qualify (letters, digits, hyphens, at least one dot, not an IP address):
    the domain goes into a URL, and the To header is written by whoever sent the message.
    """
    try:
        addresses = [addr for _name, addr in getaddresses(msg.get_all("To", []))]
    except Exception:
        addresses = []
    for addr in addresses:
        domain = addr.rpartition("@")[2].strip().rstrip(".").lower()
        if not _DOMAIN.match(domain) or _is_ip(domain):
            continue
        if not allowed or domain in allowed:
            return domain
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return text.rsplit(".", 1)[-1].isdigit()  # all-numeric TLD: an IPv4 in disguise


def extract_fields(msg: EmailMessage) -> dict[str, str]:
    """The form fields posted: id (Message-ID without <>), date, from, to, subject, body."""
    return {
        "id": header_text(msg, "Message-ID").strip().strip("<>").strip(),
        "date": header_text(msg, "Date"),
        "from": header_text(msg, "From"),
        "to": header_text(msg, "To"),
        "subject": header_text(msg, "Subject"),
        "body": body_text(msg),
    }
