"""[spamassassin] and the SpamAssassin jobs' tables. Owned by the SpamAssassin work (issue 4)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mailopsd.core.config.common import cron, non_negative, opt, positive
from mailopsd.core.config.schema_job import JobSettings
from mailopsd.core.config.types import AbsPath, Duration


def _fingerprints(keys: tuple[str, ...]) -> None:
    """Validator: GPG key ids as sa-update --gpgkey takes them (8, 16 or 40 hex digits)."""
    for key in keys:
        if not re.fullmatch(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40}", key):
            raise ValueError(f"{key!r} is not a key id (8, 16 or 40 hex digits, no spaces)")


def _channels(names: tuple[str, ...]) -> None:
    """Validator: channel names are host names such as updates.spamassassin.org."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(f"{name!r} is not a channel name (e.g. updates.spamassassin.org)")


def _install_file(path: AbsPath | None) -> None:
    """Validator: sa-update --install needs the version (>= 3 digits) in the file's name."""
    if path is not None and not re.search(r"\d{3,}", path.rsplit("/", 1)[-1]):
        raise ValueError("the file name must contain the rules version (3 or more digits), "
                         "e.g. 1913435.tar.gz")


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
    # --- added by sa-update / bayes-backup / bayes-stats (issue 4, items 3-5) ---
    site_config_dir: AbsPath = opt(AbsPath("/etc/spamassassin"),
                                   doc="spamassassin --lint --siteconfigpath (what spamd reads)")
    bayes_lock_wait: Duration = opt(Duration(900), check=non_negative,
                                    doc="how long backup/restore/learn wait for each other")


def _folders(names: tuple[str, ...]) -> None:
    """Validator: Maildir++ folder names such as ".INBOX.Spam" (spaces fine, no '/')."""
    for name in names:
        _folder(name)


def _folder(name: str) -> None:
    if (not name.startswith(".") or name in (".", "..") or "/" in name
            or any(ord(c) < 32 for c in name)):
        raise ValueError(f"{name!r} is not a Maildir++ folder name (like '.INBOX.Spam'): "
                         "a leading '.', no '/'")


def _staging_dir(path: AbsPath) -> None:
    """Validator: sa-learn glob-expands listed paths, so the staging path must be literal."""
    bad = sorted(set(path) & set("*?[]{}~:\n"))
    if bad:
        raise ValueError(f"must not contain {' '.join(bad)} (sa-learn would glob-expand it)")


@dataclass(frozen=True)
class LearnSpamJob(JobSettings):
    """[jobs.learn-spam] (was learn-spam.pl)."""

    schedule: str = opt("30 4 * * *", check=cron)
    spam_folders: tuple[str, ...] = opt((".INBOX.Spam",), check=_folders,
                                        doc="Maildir++ folders learned as spam")
    ham_folders: tuple[str, ...] = opt((".INBOX.Not Spam",), check=_folders,
                                       doc="folders learned as ham (moved back to INBOX, read)")
    spam_action: Literal["delete", "trash"] = opt(
        "delete", doc="what happens to learned spam: deleted, or moved to trash_folder (read)")
    trash_folder: str = opt(".Trash", check=_folder,
                            doc="spam_action = trash: created if missing")
    max_size: int = opt(512000, check=non_negative,
                        doc="bytes; bigger messages are left in place and counted, "
                            "as sa-learn's own 500 KiB limit would (0 = no limit)")
    staging_dir: AbsPath = opt(AbsPath("/var/tmp"), check=_staging_dir,
                               doc="a private per-run directory here holds the copies "
                                   "sa-learn reads; must be reachable by bayes_owner")
    workers: int = opt(4, check=positive, doc="users whose folders are read or cleaned at once")

    def __post_init__(self) -> None:
        both = sorted(set(self.spam_folders) & set(self.ham_folders))
        if both:
            raise ValueError(f"folders both spam and ham: {', '.join(both)}")
        if self.spam_action == "trash" and self.trash_folder in (
                *self.spam_folders, *self.ham_folders):
            raise ValueError("trash_folder must not be a spam or ham folder")


@dataclass(frozen=True)
class SaUpdateJob(JobSettings):
    """[jobs.sa-update] (was the monthly sa-update --nogpg)."""

    schedule: str = opt("0 5 1 * *", check=cron)
    random_delay: Duration = opt(Duration(3600))
    gpg: bool = opt(True, doc="verify signatures; false = the seed's --nogpg (checksums only)")
    gpg_keys: tuple[str, ...] = opt((), check=_fingerprints,
                                    doc="extra trusted signing keys (sa-update --gpgkey)")
    gpg_key_files: tuple[AbsPath, ...] = opt(
        (), doc="public key files imported before each run (readable by rules_owner)")
    channels: tuple[str, ...] = opt((), check=_channels,
                                    doc="empty = sa-update's default, updates.spamassassin.org")
    install: AbsPath | None = opt(None, check=_install_file,
                                  doc="air-gapped: install this tarball (FILE.asc, .sha256 and "
                                      ".sha512 beside it) instead of downloading")
    sa_compile: bool = opt(False, doc="run sa-compile after a good update (needs re2c)")
    reload_spamd: bool = opt(True, doc="reload spamd after a good update")
    reload_wait: Duration = opt(Duration(60), check=positive,
                                doc="how long spamd may take to come back after SIGHUP")


@dataclass(frozen=True)
class BayesBackupJob(JobSettings):
    """[jobs.bayes-backup]."""

    schedule: str = opt("15 3 * * *", check=cron)
    backup_dir: AbsPath | None = opt(None, doc="default <daemon.state_dir>/bayes-backups")
    keep_daily: int = opt(7, check=non_negative, doc="newest backup of each of the last N days")
    keep_weekly: int = opt(4, check=non_negative, doc="... of each of the last N ISO weeks")
    keep_monthly: int = opt(6, check=non_negative, doc="... of each of the last N months")


@dataclass(frozen=True)
class BayesStatsJob(JobSettings):
    """[jobs.bayes-stats] (was the daily stats line)."""

    schedule: str = opt("0 6 * * *", check=cron)
    min_messages: int = opt(200, check=non_negative,
                            doc="warn while nspam or nham is below this (Bayes is off until 200)")
    max_ratio: float = opt(5.0, check=positive,
                           doc="warn when one class outnumbers the other by more than this")
