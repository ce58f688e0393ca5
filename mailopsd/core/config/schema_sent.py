"""[sent]: the copy-to-Sent fixup service (was copy-to-sent.pl). Owned by issue 5's work."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.core.config.common import opt, positive
from mailopsd.core.config.types import AbsPath, Duration


def _folder_name(value: str) -> None:
    """Validator: a Maildir++ folder name such as ".Sent" (one path component)."""
    if not value.startswith(".") or "/" in value or value in (".", ".."):
        raise ValueError(f"expected a Maildir++ folder name such as \".Sent\" (got {value!r})")


@dataclass(frozen=True)
class SentConfig:
    """[sent]: add Bcc and \\Seen to the server-made copies in users' Sent folders."""

    enabled: bool = opt(False, doc="needs the Exim filter from etc/exim4/ installed first")
    recipients_log: AbsPath = opt(AbsPath("/var/log/exim4/sent-recipients"),
                                  doc="the log the Exim filter's logwrite fills")
    folder: str = opt(".Sent", check=_folder_name,
                      doc="Sent folder inside each Maildir (as the Exim transport saves)")
    users: tuple[str, ...] = opt((), doc="only these users; empty = [mailboxes] selection")
    pending_hold: Duration = opt(Duration(3600), check=positive,
                                 doc="a copy waits this long for its recipients, then a warning")
    recipients_keep: Duration = opt(Duration(7 * 86400), check=positive,
                                    doc="recipients wait this long for their copy (deferred "
                                        "deliveries), fixed ids are remembered as long")
    rescan_interval: Duration = opt(Duration(600), check=positive,
                                    doc="full scan of every Sent folder and of passwd")
    log_poll_interval: Duration = opt(Duration(0.2), check=positive,
                                      doc="how often the recipients log is read")
    max_header_bytes: int = opt(1 << 20, check=positive,
                                doc="a header block larger than this is left alone")
    max_message_bytes: int = opt(1 << 30, check=positive,
                                 doc="a larger message is left alone")
    mark_read: bool = opt(True, doc="mark the copy \\Seen")
    require_sender_match: bool = opt(
        True, doc="only fix a copy whose logged sender's local part is the folder's owner")
