"""[spamassassin] and the SpamAssassin jobs' tables. Owned by the SpamAssassin work (issue 4)."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.config.common import JobSettings, cron, opt
from mailopsd.config.types import Duration


@dataclass(frozen=True)
class SpamAssassinConfig:
    """[spamassassin]: whose Bayes database spamd really reads."""

    bayes_owner: str = opt("Debian-exim", doc="the user spamc runs as in Exim's transport")


@dataclass(frozen=True)
class LearnSpamJob(JobSettings):
    """[jobs.learn-spam] (was learn-spam.pl)."""

    schedule: str = opt("30 4 * * *", check=cron)


@dataclass(frozen=True)
class SaUpdateJob(JobSettings):
    """[jobs.sa-update] (was the monthly sa-update --nogpg)."""

    schedule: str = opt("0 5 1 * *", check=cron)
    random_delay: Duration = opt(Duration(3600))


@dataclass(frozen=True)
class BayesBackupJob(JobSettings):
    """[jobs.bayes-backup]."""

    schedule: str = opt("15 3 * * *", check=cron)


@dataclass(frozen=True)
class BayesStatsJob(JobSettings):
    """[jobs.bayes-stats] (was the daily stats line)."""

    schedule: str = opt("0 6 * * *", check=cron)
