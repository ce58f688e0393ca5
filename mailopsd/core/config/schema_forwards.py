"""[jobs.make-forwards] and [post-email] (was make-forwards.pl, post-email.pl). Issue 6's work."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailopsd.core.config.common import cron, opt, positive
from mailopsd.core.config.schema_job import JobSettings
from mailopsd.core.config.types import AbsPath, Duration

_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _domains(value: tuple[str, ...]) -> None:
    """Validator: every entry is a lower-case DNS name such as "example.org"."""
    for d in value:
        if not _DOMAIN.match(d):
            raise ValueError(f"expected lower-case domain names such as \"example.org\" "
                             f"(got {d!r})")


@dataclass(frozen=True)
class MakeForwardsJob(JobSettings):
    """[jobs.make-forwards]: give every user without a ~/.forward the spam-to-Trash filter.

    Disabled by default: the seed ran make-forwards.pl by hand, and a scheduled run creates a
    filter for every new account, which an admin should choose deliberately.
    """

    enabled: bool = opt(False, doc="run on the schedule (the seed ran it by hand)")
    schedule: str = opt("45 4 * * *", check=cron)
    template: AbsPath | None = opt(
        None, doc="Exim filter template; unset = the built-in one (etc/forward.template)")
    check_with_exim: bool = opt(
        True, doc="test the template with `exim -bf` before writing (skipped if exim is absent)")
    command_timeout: Duration = opt(Duration(30), check=positive,
                                    doc="limit for each exim -bf check and each file write")


@dataclass(frozen=True)
class PostEmailConfig:
    """[post-email]: `mailopsd post-email URL`, piped to from a user's .forward."""

    timeout: Duration = opt(Duration(30), check=positive,
                            doc="the whole HTTP request must finish within this")
    max_message_size: int = opt(10 * 1024 * 1024, check=positive,
                                doc="bytes; larger messages are refused (permanent error)")
    to_domains: tuple[str, ...] = opt(
        (), check=_domains,
        doc="domains {to_domain} may take; [] = any DNS name (IP literals never)")
