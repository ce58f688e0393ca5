"""The configuration schema: one frozen dataclass per TOML table.

Feature areas keep their own tables in their own modules (schema_blocker, schema_spam,
schema_sent, schema_forwards); this module holds the core tables and the root.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from mailopsd.core.config.common import cron, non_negative, opt, positive
from mailopsd.core.config.schema_blocker import BlockerConfig
from mailopsd.core.config.schema_cluster import ClusterConfig
from mailopsd.core.config.schema_forwards import MakeForwardsJob, PostEmailConfig
from mailopsd.core.config.schema_health import HealthConfig, MetricsConfig, TlsDeployConfig
from mailopsd.core.config.schema_job import JobSettings
from mailopsd.core.config.schema_livelearn import LiveLearnConfig
from mailopsd.core.config.schema_notify import NotifyConfig
from mailopsd.core.config.schema_sent import SentConfig
from mailopsd.core.config.schema_spam import (
    BayesBackupJob,
    BayesStatsJob,
    LearnSpamJob,
    SaUpdateJob,
    SpamAssassinConfig,
)
from mailopsd.core.config.types import AbsPath, Duration


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: where state lives and how the scheduler behaves."""

    state_dir: AbsPath = opt(AbsPath("/var/lib/mailopsd"), doc="state database, backups")
    run_dir: AbsPath = opt(AbsPath("/run/mailopsd"), doc="job locks")
    stop_timeout: Duration = opt(Duration(20), check=positive,
                                 doc="how long SIGTERM waits for a running job")
    misfire_grace_time: Duration = opt(Duration(3600), check=positive,
                                       doc="a start delayed by less than this still runs")
    catch_up_delay: Duration = opt(Duration(60), check=non_negative,
                                   doc="missed runs start this long after the daemon")
    watchdog_interval: Duration = opt(Duration(0), check=non_negative,
                                      doc="0 = half of systemd's WatchdogSec")
    history_days: int = opt(90, check=positive, doc="job history kept this many days")
    timezone: str = opt("", doc="schedules' time zone; empty = the system's")


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: where events go."""

    target: Literal["auto", "journald", "console", "json"] = opt(
        "auto", doc="auto: journald under systemd, console on a terminal, else JSON lines")
    level: Literal["debug", "info", "warning", "error"] = opt("info")
    journal_socket: AbsPath = opt(AbsPath("/run/systemd/journal/socket"))
    syslog_identifier: str = opt("mailopsd")


@dataclass(frozen=True)
class BinariesConfig:
    """[binaries]: every external program mailopsd runs, by absolute path."""

    exim: AbsPath = opt(AbsPath("/usr/sbin/exim4"))
    sa_learn: AbsPath = opt(AbsPath("/usr/bin/sa-learn"))
    sa_update: AbsPath = opt(AbsPath("/usr/bin/sa-update"))
    sa_compile: AbsPath = opt(AbsPath("/usr/bin/sa-compile"))
    spamassassin: AbsPath = opt(AbsPath("/usr/bin/spamassassin"))
    systemctl: AbsPath = opt(AbsPath("/bin/systemctl"))
    nft: AbsPath = opt(AbsPath("/usr/sbin/nft"))
    iptables_legacy: AbsPath = opt(AbsPath("/usr/sbin/iptables-legacy"))
    ip6tables_legacy: AbsPath = opt(AbsPath("/usr/sbin/ip6tables-legacy"))
    doveadm: AbsPath = opt(AbsPath("/usr/bin/doveadm"))
    sendmail: AbsPath = opt(AbsPath("/usr/sbin/sendmail"), doc="sends [notify] mails")
    python3: AbsPath = opt(AbsPath("/usr/bin/python3"),
                           doc="runs small file steps as another user (sa-update snapshot)")


@dataclass(frozen=True)
class MailboxesConfig:
    """[mailboxes]: which local users have a Maildir mailopsd looks after."""

    users: tuple[str, ...] = opt((), doc="explicit list; empty = every passwd user in range")
    min_uid: int = opt(1000, check=non_negative)
    max_uid: int = opt(59999, check=non_negative)
    maildir: str = opt("Maildir", doc="Maildir path relative to each home")
    exclude: tuple[str, ...] = opt((), doc="users never touched")


@dataclass(frozen=True)
class HousekeepingJob(JobSettings):
    """[jobs.housekeeping]: prune old job history and lapsed records from the state database."""

    schedule: str = opt("20 3 * * *", check=cron)


def _job(cls: type[JobSettings], key: str) -> object:
    return opt(key=key, factory=cls)


@dataclass(frozen=True)
class JobsConfig:
    """[jobs.<id>]: each scheduled job's schedule and options."""

    learn_spam: LearnSpamJob = _job(LearnSpamJob, "learn-spam")  # type: ignore[assignment]
    sa_update: SaUpdateJob = _job(SaUpdateJob, "sa-update")  # type: ignore[assignment]
    bayes_backup: BayesBackupJob = _job(BayesBackupJob, "bayes-backup")  # type: ignore[assignment]
    bayes_stats: BayesStatsJob = _job(BayesStatsJob, "bayes-stats")  # type: ignore[assignment]
    make_forwards: MakeForwardsJob = _job(MakeForwardsJob, "make-forwards")  # type: ignore[assignment]
    housekeeping: HousekeepingJob = _job(HousekeepingJob, "housekeeping")  # type: ignore[assignment]

    def get(self, job_id: str) -> JobSettings:
        """The settings of a job by its kebab-case id; raises KeyError."""
        for f in fields(self):
            if f.metadata.get("key") == job_id:
                value: JobSettings = getattr(self, f.name)
                return value
        raise KeyError(job_id)

    def ids(self) -> tuple[str, ...]:
        """Every job id, in schema order."""
        return tuple(str(f.metadata["key"]) for f in fields(self))


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    daemon: DaemonConfig = opt(factory=DaemonConfig)
    logging: LoggingConfig = opt(factory=LoggingConfig)
    binaries: BinariesConfig = opt(factory=BinariesConfig)
    mailboxes: MailboxesConfig = opt(factory=MailboxesConfig)
    jobs: JobsConfig = opt(factory=JobsConfig)
    blocker: BlockerConfig = opt(factory=BlockerConfig)
    spamassassin: SpamAssassinConfig = opt(factory=SpamAssassinConfig)
    sent: SentConfig = opt(factory=SentConfig)
    post_email: PostEmailConfig = opt(key="post-email", factory=PostEmailConfig)
    metrics: MetricsConfig = opt(factory=MetricsConfig)  # issue 18
    health: HealthConfig = opt(factory=HealthConfig)  # issue 18
    tls_deploy: TlsDeployConfig = opt(key="tls-deploy", factory=TlsDeployConfig)  # issue 18
    notify: NotifyConfig = opt(factory=NotifyConfig)
    live_learn: LiveLearnConfig = opt(key="live-learn", factory=LiveLearnConfig)
    cluster: ClusterConfig | None = opt(None)  # optional: several MX hosts (issue 16)


def validate_config(cfg: Config) -> list[tuple[str, str]]:
    """Checks that span several keys; returns (dotted key, message) pairs."""
    problems: list[tuple[str, str]] = []
    if cfg.mailboxes.min_uid > cfg.mailboxes.max_uid:
        problems.append(("mailboxes.min_uid", "must not be greater than mailboxes.max_uid"))
    if cfg.daemon.state_dir == cfg.daemon.run_dir:
        problems.append(("daemon.run_dir", "must differ from daemon.state_dir"))
    if cfg.daemon.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(cfg.daemon.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("daemon.timezone", f"unknown time zone {cfg.daemon.timezone!r}"))
    return problems
