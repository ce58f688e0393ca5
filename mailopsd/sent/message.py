"""The header of a Sent copy: find its Exim id, To/Cc and Bcc, and build the added Bcc: line.

Only the header block is read (bounded by ``limit``); the body is never loaded, so a 50 MB
message costs as much memory as a 1 KB one. Everything in a header is hostile input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailopsd.core.errors import MailopsError
from mailopsd.sent.addresses import Address, parse_address_list, tokenize

_EXIM_ID = re.compile(r"^[0-9A-Za-z]{4,32}(?:-[0-9A-Za-z]{2,32}){2}$")
# Protocols Exim names for authenticated SMTP and local submissions: what the filter copies.
_SUBMISSION = re.compile(r"^(?:(?:utf8)?e?smtps?a|local(?:-\w+)?)$", re.IGNORECASE)
_CHUNK = 65536


class HeaderError(MailopsError):
    """A message whose header block cannot be read within the limit."""


@dataclass
class Header:
    """A parsed header block and where the rest of the message starts."""

    raw: bytes                      # header lines, up to (not including) the blank line
    body_offset: int                # where the blank line (or the end of file) is
    newline: bytes                  # b"\n" or b"\r\n", as the message uses
    fields: list[tuple[str, str]] = field(default_factory=list)  # (lower name, unfolded value)

    def values(self, name: str) -> list[str]:
        """Every value of a header (case-insensitive name), in order."""
        name = name.lower()
        return [v for n, v in self.fields if n == name]

    def has(self, name: str) -> bool:
        """Whether the header is present at all."""
        return bool(self.values(name))

    def received_id(self) -> tuple[str | None, str | None]:
        """(Exim id, protocol) from the TOP Received: header, or (None, None)."""
        tops = self.values("received")
        return parse_received(tops[0]) if tops else (None, None)

    def visible_recipients(self) -> list[Address]:
        """The addresses in every To: and Cc: header."""
        out: list[Address] = []
        for name in ("to", "cc"):
            for value in self.values(name):
                out.extend(parse_address_list(value))
        return out


def parse_received(value: str) -> tuple[str | None, str | None]:
    """(id, protocol) from a Received: value such as Exim's ``... with esmtpa ... id X;``.

    Comments (helo, envelope-from) and quoted strings cannot fake the keywords: they are
    dropped or kept whole by the tokenizer. Only an id shaped like an Exim id is returned.
    """
    words: list[str] = []
    for kind, text in tokenize(value):
        if kind == ";":
            break
        words.append(text if kind == "w" else "\x00")
    lowered = [w.lower() for w in words]
    start = lowered.index("by") if "by" in lowered else 0
    exim_id = protocol = None
    for k in range(start, len(words) - 1):
        if lowered[k] == "id" and exim_id is None and _EXIM_ID.match(words[k + 1]):
            exim_id = words[k + 1]
        elif lowered[k] == "with" and protocol is None and words[k + 1] != "\x00":
            protocol = words[k + 1]
    return exim_id, protocol


def is_submission(protocol: str | None) -> bool:
    """Whether a Received protocol is one the copy-to-Sent filter makes copies for."""
    return bool(protocol and _SUBMISSION.match(protocol))


def read_header(fd: int, limit: int) -> Header:
    """Read and parse the header block of the open message ``fd`` (from offset 0).

    Raises HeaderError if no end of header is found within ``limit`` bytes.
    """
    buf = b""
    offset = 0
    while True:
        chunk = os.pread(fd, _CHUNK, offset)
        search_from = max(0, len(buf) - 3)
        buf += chunk
        offset += len(chunk)
        end = _header_end(buf, search_from)
        if end is not None:
            break
        if not chunk:  # a message that is all header
            end = len(buf)
            break
        if len(buf) > limit:
            raise HeaderError(f"no end of header within {limit} bytes")
    raw = buf[:end]
    if len(raw) > limit:
        raise HeaderError(f"no end of header within {limit} bytes")
    newline = b"\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    return Header(raw=raw, body_offset=end, newline=newline, fields=parse_fields(raw))


def _header_end(buf: bytes, start: int) -> int | None:
    """Offset just past the last header line's newline, if the blank line is in ``buf``."""
    if buf.startswith(b"\n") or buf.startswith(b"\r\n"):
        return 0
    lf = buf.find(b"\n\n", start)
    crlf = buf.find(b"\n\r\n", start)
    hits = [h for h in (lf, crlf) if h >= 0]
    return min(hits) + 1 if hits else None


def parse_fields(raw: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) for each header line; malformed lines are skipped."""
    text = raw.decode("utf-8", "surrogateescape")
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if out:
                name, value = out[-1]
                out[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep and name and " " not in name and "\t" not in name:
            out.append((name.lower(), value.strip()))
    return out


def bcc_field(addresses: Iterable[Address], newline: bytes, width: int = 78) -> bytes:
    """A folded ``Bcc:`` header line (with its newline) listing ``addresses``.

    Raises ValueError if an address holds a control character; callers render first.
    """
    rendered = [a.render() for a in addresses]
    lines: list[str] = []
    line = "Bcc:"
    for k, item in enumerate(rendered):
        piece = item + ("," if k < len(rendered) - 1 else "")
        if len(line) + 1 + len(piece) > width and line.strip() not in ("Bcc:", ""):
            lines.append(line)
            line = ""
        line += " " + piece
    lines.append(line)
    text = newline.decode().join(lines) + newline.decode()
    return text.encode("utf-8", "surrogateescape")
