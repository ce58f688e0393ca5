"""[live-learn]: learning spam the moment a user moves it (Dovecot IMAPSieve -> spool -> daemon).

Owned by the live-learn work (issue 17); see docs/live-learn.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.core.config.common import non_negative, opt
from mailopsd.core.config.types import AbsPath, Duration


def _spool_dir(path: AbsPath) -> None:
    """Validator: a real directory path below /, without characters sa-learn or a shell mangle."""
    if path.rstrip("/") in ("", "/tmp", "/var/tmp") or any(ord(c) < 32 for c in path):
        raise ValueError("must be a directory of its own (not /, /tmp or /var/tmp), "
                         "without control characters")


@dataclass(frozen=True)
class LiveLearnConfig:
    """[live-learn]: the spool ``learn-enqueue`` writes and the live-learn service drains."""

    enabled: bool = opt(False, doc="the live-learn service in the daemon")
    spool_dir: AbsPath = opt(AbsPath("/var/spool/mailopsd/learn"), check=_spool_dir,
                             doc="one file per pending message, owned by the submitting user")
    daily_limit: int = opt(300, check=non_negative,
                           doc="messages one user may submit per day; more: counted, not learned")
    batch_wait: Duration = opt(Duration(2), check=non_negative,
                               doc="after the first new entry, gather a batch this long")
