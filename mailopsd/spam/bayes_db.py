"""The Bayes database spamd reads: sa-learn as its owner, ``--dump magic``, the shared lock.

Every sa-learn here runs AS the database owner with HOME set (``[spamassassin] bayes_owner``),
with ``--dbpath`` when ``bayes_path`` is set: root must never create or rewrite the database
(root-owned files make spamd lose Bayes silently). Learn, backup and restore are serialised
with one lock file per configuration, ``<daemon.run_dir>/locks/bayes.lock`` (``bayes_lock``);
learn-spam takes the same lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailopsd.core.errors import JobBusyError, MailopsError, ProcessError
from mailopsd.core.users import Account

_MAGIC = re.compile(r"^\s*[\d.]+\s+\d+\s+(\d+)\s+\d+\s+non-token data: (.+?)\s*$")
MAGIC_FIELDS = {"bayes db version": "db_version", "nspam": "nspam", "nham": "nham",
                "ntokens": "ntokens", "oldest atime": "oldest_atime",
                "newest atime": "newest_atime", "last journal sync atime": "last_sync_atime",
                "last expiry atime": "last_expiry_atime",
                "last expire atime delta": "last_expire_atime_delta",
                "last expire reduction count": "last_expire_reduction_count"}
BAYES_ACTIVE_AT = 200  # SpamAssassin scores with Bayes only once nspam and nham reach this
# Maintenance commands (--sync, --dump, --backup, --restore) need no rules, only the site config
# (/etc/spamassassin, where bayes_path or the store module may be set, is still read). Pointing
# --configpath at a directory that does not exist skips parsing ~60 rule files: sa-learn then
# starts in 0.25 s instead of 0.8 s. (/nonexistent is Debian's never-existing home directory.)
NO_RULES = "/nonexistent/mailopsd-no-rules"


class BayesError(MailopsError):
    """The Bayes database could not be read, backed up or restored."""


@dataclass(frozen=True)
class Magic:
    """The numbers ``sa-learn --dump magic`` prints (every line, by snake_case name)."""

    values: dict[str, int]

    @property
    def nspam(self) -> int:
        return self.values["nspam"]

    @property
    def nham(self) -> int:
        return self.values["nham"]

    @property
    def ntokens(self) -> int:
        return self.values["ntokens"]

    def sentence(self) -> str:
        """The seed's daily line, word for word."""
        return (f"{self.nspam} spams and {self.nham} hams have been processed with "
                f"{self.ntokens} tokens.")


def parse_magic(text: str) -> Magic:
    """Parse ``--dump magic`` output; raises BayesError if nspam/nham/ntokens are missing."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = _MAGIC.match(line)
        if m:
            name = MAGIC_FIELDS.get(m.group(2), re.sub(r"\W+", "_", m.group(2)).strip("_"))
            values[name] = int(m.group(1))
    missing = [k for k in ("nspam", "nham", "ntokens") if k not in values]
    if missing:
        raise BayesError(f"sa-learn --dump magic output lacks {', '.join(missing)}: "
                         f"{text.strip()[:200]!r}")
    return Magic(values)


def assess(magic: Magic, min_messages: int = BAYES_ACTIVE_AT,
           max_ratio: float = 5.0) -> list[tuple[str, str]]:
    """Warnings about a database's counts as (event, message) pairs; empty = healthy."""
    warnings: list[tuple[str, str]] = []
    low = [f"{name} {value}" for name, value in (("nspam", magic.nspam), ("nham", magic.nham))
           if value < min_messages]
    if low:
        warnings.append(("bayes_not_active", f"{' and '.join(low)} below {min_messages}: "
                         "SpamAssassin does not use Bayes until both classes reach 200"))
    small, big = sorted((magic.nspam, magic.nham))
    if big and big > max_ratio * max(small, 1):
        more = "spam" if magic.nspam > magic.nham else "ham"
        warnings.append(("bayes_unbalanced", f"{big} {more} vs {small}: more than {max_ratio:g}"
                         f" times as much {more}; train the other class too"))
    return warnings


@dataclass(frozen=True)
class BayesDB:
    """One Bayes database: whose it is, where, and how to run sa-learn on it."""

    owner: Account
    dbpath: str
    sa_learn: str

    @classmethod
    def from_config(cls, config: Any) -> BayesDB:
        """The database ``[spamassassin]`` names; raises MailopsError for an unknown owner."""
        sa = config.spamassassin
        return cls(Account.lookup(sa.bayes_owner, "spamassassin.bayes_owner"), sa.bayes_path,
                   config.binaries.sa_learn)

    @property
    def prefix(self) -> str:
        """The path prefix of the database files (``<prefix>_toks``, ``<prefix>_seen``)."""
        return self.dbpath or os.path.join(self.owner.home, ".spamassassin", "bayes")

    def argv(self, *args: str) -> tuple[str, ...]:
        """sa-learn's argv for a maintenance command on this database (no rules loaded)."""
        db = ("--dbpath", self.dbpath) if self.dbpath else ()
        return (self.sa_learn, "--configpath", NO_RULES, *db, *args)

    def run(self, *args: str, timeout: float, cancel: threading.Event | None = None,
            ok_codes: tuple[int, ...] = (0,)) -> Any:
        """Run sa-learn as the owner; returns process.Result. Raises ProcessError."""
        from mailopsd.core.process import run

        return run(self.argv(*args), timeout=timeout, account=self.owner, ok_codes=ok_codes,
                   cancel=cancel)

    def exists(self) -> bool:
        """Whether the token database file is there (lstat; nothing followed)."""
        try:
            os.lstat(self.prefix + "_toks")
            return True
        except OSError:
            return False

    def journal_pending(self) -> bool:
        """Whether a non-empty journal waits to be synced into the database."""
        try:
            return os.lstat(self.prefix + "_journal").st_size > 0
        except OSError:
            return False

    def magic(self, timeout: float = 300, cancel: threading.Event | None = None) -> Magic | None:
        """``--dump magic`` parsed; None if the database does not exist yet (rc 2).

        Raises BayesError if it exists but cannot be read.
        """
        try:
            res = self.run("--dump", "magic", timeout=timeout, cancel=cancel, ok_codes=(0, 2))
        except ProcessError as exc:
            raise BayesError(f"sa-learn --dump magic failed for {self.owner.name}: {exc}") from exc
        if res.returncode == 2:
            if self.exists():
                raise BayesError(f"sa-learn cannot read the Bayes database {self.prefix}_toks "
                                 f"as {self.owner.name}: {res.stderr.strip()[-300:]}")
            return None
        return parse_magic(res.stdout)


def bayes_lock(run_dir: str) -> Any:
    """The lock learn-spam, bayes-backup and restore share: <run_dir>/locks/bayes.lock."""
    from mailopsd.core.locks import FileLock

    return FileLock(os.path.join(run_dir, "locks", "bayes.lock"))


@contextlib.contextmanager
def hold_bayes_lock(run_dir: str, wait: float,
                    cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the Bayes lock, waiting up to ``wait`` seconds for another holder.

    Raises JobBusyError when the wait runs out, JobCancelled if ``cancel`` is set meanwhile.
    """
    from mailopsd.core.errors import JobCancelled

    lock = bayes_lock(run_dir)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            break
        except JobBusyError:
            if time.monotonic() >= deadline:
                raise JobBusyError(f"the Bayes database is busy (learn, backup or restore, "
                                   f"pid {lock.holder()}); waited {wait:.0f}s") from None
            if cancel is not None and cancel.wait(0.5):
                raise JobCancelled("cancelled while waiting for the Bayes lock") from None
            if cancel is None:
                time.sleep(0.5)
    try:
        yield
    finally:
        lock.release()
