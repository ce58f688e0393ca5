"""Back up and restore the Bayes database spamd reads (used by jobs/bayes_backup.py and
``mailopsd bayes backup|restore``).

Backup, under the Bayes lock: ``sa-learn --sync``, ``--dump magic``, ``--backup`` (all as the
owner); the dump must parse and hold exactly magic's nspam/nham/ntokens; then it is gzipped,
fsynced and renamed into the backup directory and listed in SHA256SUMS; retention prunes.
Restore: the file is checked first (checksum, gzip, structure), a safety backup of the current
database is taken, ``sa-learn --restore`` runs as the owner, and magic must then match the file
(else the safety backup is put back).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from typing import Any

from mailopsd.core.errors import MailopsError
from mailopsd.spam.bayes_backup import (
    BackupCounts,
    InvalidBackupError,
    check_counts,
    load_backup,
    parse_backup,
    prune,
    write_backup,
)
from mailopsd.spam.bayes_db import BayesDB, BayesError, Magic, hold_bayes_lock


def backup_dir(config: Any) -> str:
    """Where backups go: [jobs.bayes-backup] backup_dir, else <state_dir>/bayes-backups."""
    chosen = config.jobs.bayes_backup.backup_dir
    return str(chosen) if chosen else os.path.join(config.daemon.state_dir, "bayes-backups")


def _dump(db: BayesDB, timeout: float, cancel: threading.Event | None,
          ) -> tuple[Magic, str, BackupCounts]:
    """Sync, then read magic and the dump; they must agree. Raises BayesError/ProcessError.

    Magic (read-only) and --backup run side by side: each sa-learn start costs more than the
    work, and we hold the Bayes lock, so only spamd's autolearn could change the database in
    between; one mismatch is retried for that reason.
    """
    from concurrent.futures import ThreadPoolExecutor

    if db.journal_pending():
        db.run("--sync", timeout=timeout, cancel=cancel)
    for attempt in (1, 2):
        with ThreadPoolExecutor(2, thread_name_prefix="bayes-dump") as pool:
            magic_f = pool.submit(db.magic, timeout, cancel)
            dump_f = pool.submit(db.run, "--backup", timeout=timeout, cancel=cancel)
            magic, text = magic_f.result(), dump_f.result().stdout
        if magic is None:
            raise BayesError(f"the Bayes database {db.prefix} disappeared")
        counts = parse_backup(text)
        try:
            check_counts(counts, magic.nspam, magic.nham, magic.ntokens, "--dump magic")
            return magic, text, counts
        except InvalidBackupError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def backup_now(config: Any, log: Any, *, cancel: threading.Event | None = None,
               dry_run: bool = False, tag: str = "",
               now: datetime | None = None) -> dict[str, Any]:
    """Take one validated backup and apply retention; returns counts for the job result.

    A database that does not exist yet is skipped with a warning (not a failure).
    Raises BayesError (InvalidBackupError if the dump does not check out), ProcessError,
    JobBusyError if the Bayes lock stays busy.
    """
    sa, job = config.spamassassin, config.jobs.bayes_backup
    db = BayesDB.from_config(config)
    directory = backup_dir(config)
    now = now or datetime.now(UTC)
    timeout = float(job.timeout)
    with hold_bayes_lock(config.daemon.run_dir, float(sa.bayes_lock_wait), cancel):
        if not db.exists() and db.magic(timeout, cancel) is None:
            log.warning("bayes_db_missing", owner=db.owner.name, path=db.prefix,
                        detail="no Bayes database yet: nothing to back up")
            return {"backed_up": 0, "db_exists": False}
        if dry_run:
            doomed = prune(directory, job.keep_daily, job.keep_weekly, job.keep_monthly, now,
                           dry_run=True) if os.path.isdir(directory) else []
            log.info("bayes_backup_dry_run", directory=directory, would_prune=doomed)
            return {"backed_up": 0, "dry_run": True, "would_prune": len(doomed)}
        try:
            magic, text, counts = _dump(db, timeout, cancel)
        except InvalidBackupError as exc:  # nothing written: the last good backup stays
            log.error("bayes_backup_invalid", owner=db.owner.name, reason=str(exc))
            raise
        path, digest = write_backup(directory, text, now, tag)
    size = os.path.getsize(path)
    log.info("bayes_backup_written", path=path, bytes=size, sha256=digest, nspam=magic.nspam,
             nham=magic.nham, ntokens=magic.ntokens, nseen=counts.nseen, tag=tag or None)
    result: dict[str, Any] = {"backed_up": 1, "path": path, "bytes": size,
                              "nspam": magic.nspam, "nham": magic.nham,
                              "ntokens": magic.ntokens}
    removed = prune(directory, job.keep_daily, job.keep_weekly, job.keep_monthly, now)
    if removed:
        log.info("bayes_backups_pruned", directory=directory, removed=removed)
    result["pruned"] = len(removed)
    return result


def _restore_text(db: BayesDB, text: str, timeout: float,
                  cancel: threading.Event | None) -> None:
    """``sa-learn --restore`` of ``text`` as the owner. Raises ProcessError.

    sa-learn opens the file itself as the owner (a pipe on /dev/stdin is refused: it belongs
    to root), so the text goes to a file only the owner can read, in a directory only root
    can write.
    """
    tmpdir = tempfile.mkdtemp(prefix="mailopsd-restore-")
    try:
        os.chmod(tmpdir, 0o711)
        path = os.path.join(tmpdir, "bayes.backup")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchown(f.fileno(), db.owner.uid, db.owner.gid)
            f.write(text)
        db.run("--restore", path, timeout=timeout, cancel=cancel)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def restore(config: Any, path: str, log: Any, *, cancel: threading.Event | None = None,
            safety_backup: bool = True, now: datetime | None = None) -> dict[str, Any]:
    """Restore the Bayes database from ``path`` after validating it; returns a summary.

    Raises InvalidBackupError (nothing was changed) for a bad file, BayesError if the
    restored database does not match (the safety backup is then put back), ProcessError,
    JobBusyError.
    """
    try:
        loaded = load_backup(path)
    except InvalidBackupError as exc:
        log.error("bayes_restore_refused", file=path, reason=str(exc))
        raise
    sa, job = config.spamassassin, config.jobs.bayes_backup
    db = BayesDB.from_config(config)
    timeout = float(job.timeout)
    now = now or datetime.now(UTC)
    c = loaded.counts
    with hold_bayes_lock(config.daemon.run_dir, float(sa.bayes_lock_wait), cancel):
        safety: str | None = None
        if safety_backup and db.magic(timeout, cancel) is not None:
            magic, text, _ = _dump(db, timeout, cancel)
            safety, digest = write_backup(backup_dir(config), text, now, "pre-restore")
            log.info("bayes_backup_written", path=safety, sha256=digest, nspam=magic.nspam,
                     nham=magic.nham, ntokens=magic.ntokens, tag="pre-restore")
        _restore_text(db, loaded.text, timeout, cancel)
        after = db.magic(timeout, cancel)
        try:
            if after is None:
                raise InvalidBackupError("the database is missing after sa-learn --restore")
            check_counts(c, after.nspam, after.nham, after.ntokens, "the restored database")
        except InvalidBackupError as exc:
            if safety:
                with contextlib.suppress(MailopsError):
                    _restore_text(db, load_backup(safety).text, timeout, None)
            log.error("bayes_restore_failed", file=path, reason=str(exc), put_back=safety)
            where = f"; the previous database was put back from {safety}" if safety else ""
            raise BayesError(f"restore of {path} did not check out: {exc}{where}") from exc
    log.info("bayes_restore_finished", file=path, owner=db.owner.name, path=db.prefix,
             nspam=c.nspam, nham=c.nham, ntokens=c.ntokens, checksum=loaded.checksum,
             safety_backup=safety)
    return {"file": path, "nspam": c.nspam, "nham": c.nham, "ntokens": c.ntokens,
            "checksum": loaded.checksum, "safety_backup": safety}
