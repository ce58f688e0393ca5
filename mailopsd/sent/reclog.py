"""The recipients log the copy-to-Sent system filter writes (etc/exim4/copy-to-sent.filter).

One line per delivery attempt of a message a local account sent::

    2026-11-24 22:32:18 1xVz3i-0004Li-0s mailopsd-sent/1 n=6 sender=<b64> recipients=<b64>

``recipients`` is Exim's ``$recipients`` (comma-space separated, RCPT order, quoted local parts
keep their quotes) and ``sender`` is ``$sender_address``, both base64 so that no address can
break or forge a line. ``n`` is ``$recipients_count``, a cross-check of the parse.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from mailopsd.sent.addresses import Address, parse_address_list

TAG = "mailopsd-sent/1"
_LINE = re.compile(
    r"(?:^|\s)(?P<id>[0-9A-Za-z]{4,32}(?:-[0-9A-Za-z]{2,32}){2}) " + re.escape(TAG)
    + r" n=(?P<n>\d{1,7}) sender=(?P<sender>[A-Za-z0-9+/=]*)"
    r" recipients=(?P<rcpts>[A-Za-z0-9+/=]*)\s*$")


class RecipientsLineError(ValueError):
    """A line that carries the tag but cannot be decoded."""


@dataclass(frozen=True)
class RecipientsEntry:
    """What the filter logged for one message."""

    exim_id: str
    sender: str
    recipients_raw: str
    count: int

    def recipients(self) -> list[Address]:
        """The envelope recipients, parsed as an RFC 5322 address list."""
        return parse_address_list(self.recipients_raw)

    def sender_local_part(self) -> str:
        """The unquoted local part of the sender ('' for the null sender)."""
        addrs = parse_address_list(self.sender)
        return addrs[0].local if addrs else ""


def _b64(text: str) -> str:
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True) if text else b""
    except (binascii.Error, ValueError) as exc:
        raise RecipientsLineError(f"bad base64: {exc}") from None
    return data.decode("utf-8", "surrogateescape")


def parse_line(line: str) -> RecipientsEntry | None:
    """The entry on a recipients-log line; None for lines without our tag.

    Raises RecipientsLineError for a tagged line that does not decode.
    """
    if TAG not in line:
        return None
    m = _LINE.search(line.rstrip("\r\n"))
    if m is None:
        raise RecipientsLineError("malformed recipients line")
    return RecipientsEntry(exim_id=m.group("id"), sender=_b64(m.group("sender")),
                           recipients_raw=_b64(m.group("rcpts")), count=int(m.group("n")))
