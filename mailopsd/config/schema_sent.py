"""[sent]: the copy-to-Sent fixup service (was copy-to-sent.pl). Owned by issue 5's work."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.config.common import opt


@dataclass(frozen=True)
class SentConfig:
    """[sent]: add Bcc and \\Seen to the server-made copies in users' Sent folders."""

    enabled: bool = opt(False, doc="needs the Exim filter from etc/exim4/ installed first")
