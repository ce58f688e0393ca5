"""[spamassassin] and the SpamAssassin jobs' tables. Owned by the SpamAssassin work (issue 4)."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.config.common import JobSettings, cron, opt
from mailopsd.config.types import AbsPath, Duration


@dataclass(frozen=True)
class SpamAssassinConfig:
    """[spamassassin]: whose Bayes database spamd really reads."""

    bayes_owner: str = opt("Debian-exim", doc="the user spamc runs as in Exim's transport")
    bayes_path: str = opt("", doc="sa-learn --dbpath prefix; empty = the owner's "
                                  "~/.spamassassin/bayes")
    rules_owner: str = opt("debian-spamd", doc="sa-update runs as this user")
    update_dir: AbsPath = opt(AbsPath("/var/lib/spamassassin"),
                              doc="sa-update --updatedir (the rules spamd loads)")
    gpg_homedir: AbsPath = opt(AbsPath("/var/lib/spamassassin/sa-update-keys"))
    spamd_pidfile: AbsPath = opt(AbsPath("/run/spamd.pid"))
    spamd_units: tuple[str, ...] = opt(("spamd.service", "spamassassin.service"),
                                       doc="the first unit that exists is reloaded")


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
