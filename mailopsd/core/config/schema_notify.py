"""[notify]: who is mailed when a job fails or a service degrades (cron's MAILTO)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailopsd.core.config.common import opt, positive
from mailopsd.core.config.types import Duration

# a login name or a plain address: nothing a header or sendmail's argv could be tricked by
_RECIPIENT = re.compile(r"[A-Za-z0-9_.+=][A-Za-z0-9_.+=-]*(@[A-Za-z0-9.-]+)?", re.ASCII)


def _recipients(value: tuple[str, ...]) -> None:
    """Validator: each entry is a local user ("root") or an address ("admin@example.org")."""
    bad = [v for v in value if not _RECIPIENT.fullmatch(v)]
    if bad:
        raise ValueError(f"not a user or mail address: {', '.join(repr(b) for b in bad)} "
                         "(write e.g. \"root\" or \"admin@example.org\")")


@dataclass(frozen=True)
class NotifyConfig:
    """[notify]: mail the admin about a failed job or a degraded service."""

    mail_to: tuple[str, ...] = opt((), check=_recipients,
                                   doc='e.g. ["root"]; empty = send no mail')
    interval: Duration = opt(Duration(3600), check=positive,
                             doc="at most one mail per job (or service) per interval")
