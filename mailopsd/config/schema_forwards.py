"""[jobs.make-forwards] and [post-email] (was make-forwards.pl, post-email.pl). Issue 6's work."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.config.common import JobSettings, cron, opt


@dataclass(frozen=True)
class MakeForwardsJob(JobSettings):
    """[jobs.make-forwards]: give every user without a ~/.forward the spam-to-Trash filter."""

    enabled: bool = opt(False)
    schedule: str = opt("45 4 * * *", check=cron)


@dataclass(frozen=True)
class PostEmailConfig:
    """[post-email]: `mailopsd post-email URL`, piped to from a user's .forward."""

    timeout: float = opt(30.0)
