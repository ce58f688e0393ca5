"""Bayes backup files: the ``sa-learn --backup`` format, checked; gzip files written atomically
with a sha256 manifest; retention.

Why validate ourselves: ``sa-learn --restore`` accepts a truncated backup with exit 0 and a
smaller database. A backup is: ``v`` lines (db_version first, num_spam, num_nonspam), then one
``t`` line per token (spam count, ham count, atime, hex token), then ``s`` lines (h|s, msgid).
Files: ``bayes-<UTC stamp>[-<tag>].backup.gz`` plus ``SHA256SUMS`` (``sha256sum -c`` format).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailopsd.spam.bayes_db import BayesError

MANIFEST = "SHA256SUMS"
NAME = re.compile(r"^bayes-(\d{8}T\d{6}Z)(?:-([a-z][a-z0-9-]*))?\.backup\.gz$")
_V_LINE = re.compile(r"v\t(\d+)\t([^\t ]+)[^\t]*")
_T_LINE = re.compile(r"t\t\d+\t\d+\t\d+\t[0-9a-fA-F]+")
_S_LINE = re.compile(r"s\t[hs]\t[^\t]+")
# SpamAssassin's Bayes storage format since 3.0 (BayesStore DBM and SQL both write 3); a dump
# of another version would be converted or refused by sa-learn half-way through a restore
DB_VERSION = 3


class InvalidBackupError(BayesError):
    """A backup file is truncated, corrupt or does not match what it claims."""


@dataclass(frozen=True)
class BackupCounts:
    """What a backup holds: the v-line header numbers and the t/s line counts."""

    db_version: int
    nspam: int
    nham: int
    ntokens: int
    nseen: int


def parse_backup(text: str) -> BackupCounts:
    """Check the structure of a ``--backup`` dump and count it; raises InvalidBackupError."""
    if not text:
        raise InvalidBackupError("the backup is empty")
    if not text.endswith("\n"):
        raise InvalidBackupError("the backup does not end with a newline: truncated")
    lines = text[:-1].split("\n")
    first = lines[0].split("\t")
    if len(first) != 3 or first[0] != "v" or not first[2].startswith("db_version"):
        raise InvalidBackupError("the first line is not the db_version line: not a Bayes backup")
    header: dict[str, int] = {}
    ntokens = nseen = 0
    section = "v"
    for number, line in enumerate(lines, 1):
        tag = line[:1]
        if tag == "t" and section != "s" and _T_LINE.fullmatch(line):
            section = "t"
            ntokens += 1
        elif tag == "s" and _S_LINE.fullmatch(line):
            section = "s"
            nseen += 1
        elif tag == "v" and section == "v" and (m := _V_LINE.fullmatch(line)):
            header[m.group(2)] = int(m.group(1))
        else:
            raise InvalidBackupError(f"line {number} is not valid backup data: {line[:80]!r}")
    missing = [k for k in ("num_spam", "num_nonspam") if k not in header]
    if missing:
        raise InvalidBackupError(f"the header lacks {', '.join(missing)}")
    if header["db_version"] != DB_VERSION:
        raise InvalidBackupError(f"db_version {header['db_version']}: a dump of another Bayes "
                                 f"database format (this SpamAssassin writes {DB_VERSION})")
    return BackupCounts(header["db_version"], header["num_spam"], header["num_nonspam"],
                        ntokens, nseen)


def check_counts(counts: BackupCounts, nspam: int, nham: int, ntokens: int, what: str) -> None:
    """Raise InvalidBackupError unless the backup's counts equal ``what``'s numbers."""
    got = (counts.nspam, counts.nham, counts.ntokens)
    if got != (nspam, nham, ntokens):
        raise InvalidBackupError(
            f"backup holds nspam {got[0]}, nham {got[1]}, {got[2]} tokens but {what} says "
            f"nspam {nspam}, nham {nham}, ntokens {ntokens}")


def check_seen(counts: BackupCounts) -> None:
    """Every learned message has an ``s`` line, and they come last: fewer s lines than
    nspam + nham means the dump was cut (also one cut between two lines and then gzipped: a
    valid gzip says nothing about what was put in it). Raises InvalidBackupError."""
    if counts.nseen < counts.nspam + counts.nham:
        raise InvalidBackupError(
            f"only {counts.nseen} seen-message lines for {counts.nspam + counts.nham} learned "
            "messages: the file is truncated")


def backup_name(when: datetime, tag: str = "") -> str:
    """The file name of a backup taken at ``when``."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"bayes-{stamp}{'-' + tag if tag else ''}.backup.gz"


def name_time(name: str) -> datetime | None:
    """When a backup file was taken, from its name; None for other files."""
    m = NAME.match(name)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if m else None


def name_tag(name: str) -> str:
    """A backup name's tag ("" for scheduled backups, "pre-restore" for safety copies)."""
    m = NAME.match(name)
    return (m.group(2) or "") if m else ""


def ensure_dir(path: str) -> None:
    """Create the backup directory root-only (0700); refuse a symlink. Raises BayesError."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid():
        raise BayesError(f"backup directory {path} is not a directory owned by us")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(directory: str, name: str, data: bytes) -> None:
    """Write ``directory/name`` via a temp file, fsync, rename, fsync the directory."""
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_backup(directory: str, text: str, when: datetime, tag: str = "") -> tuple[str, str]:
    """Compress and store a validated dump; record it in the manifest. Returns (path, sha256)."""
    ensure_dir(directory)
    name = backup_name(when, tag)
    data = gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)
    digest = hashlib.sha256(data).hexdigest()
    try:
        atomic_write(directory, name, data)
    except OSError as exc:  # a full disk (ENOSPC), a quota: nothing half-written stays
        raise BayesError(f"cannot write the backup {name} in {directory}: "
                         f"{exc.strerror or exc}") from exc
    try:
        entries = read_manifest(directory)
        entries[name] = digest
        write_manifest(directory, entries)
    except OSError as exc:
        raise BayesError(f"the backup {name} was written whole, but {MANIFEST} in {directory} "
                         f"could not be updated: {exc.strerror or exc}") from exc
    return os.path.join(directory, name), digest


def read_manifest(directory: str) -> dict[str, str]:
    """name -> sha256 from ``SHA256SUMS`` (missing file = empty; bad lines ignored)."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        if m:
            entries[m.group(2)] = m.group(1)
    return entries


def write_manifest(directory: str, entries: dict[str, str]) -> None:
    """Rewrite ``SHA256SUMS`` atomically, sorted by name."""
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
    atomic_write(directory, MANIFEST, text.encode("utf-8"))


def select_retained(stamps: Iterable[datetime], daily: int, weekly: int,
                    monthly: int) -> set[datetime]:
    """Which backups to keep: the newest of each of the last ``daily`` days, ``weekly`` ISO weeks
    and ``monthly`` months that have backups (as borg prune does), and always the newest."""
    ordered = sorted(set(stamps), reverse=True)
    keep: set[datetime] = set(ordered[:1])
    periods = ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
               (monthly, lambda t: (t.year, t.month)))
    for count, period in periods:
        seen: set[object] = set()
        for stamp in ordered:
            key = period(stamp)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(key)
            keep.add(stamp)
    return keep


def prune(directory: str, daily: int, weekly: int, monthly: int, now: datetime,
          dry_run: bool = False) -> list[str]:
    """Delete backups retention does not keep; returns the names removed (or to remove).

    Scheduled backups follow ``select_retained``; tagged safety copies (pre-restore) are
    kept ``daily`` days. Files with other names are never touched.
    """
    names = [n for n in os.listdir(directory) if NAME.match(n)]
    plain = {name_time(n): n for n in names if not name_tag(n)}
    kept = select_retained([t for t in plain if t], daily, weekly, monthly)
    doomed = [n for t, n in plain.items() if t not in kept]
    horizon = max(daily, 1) * 86400
    doomed += [n for n in names if name_tag(n) and
               (now - (name_time(n) or now)).total_seconds() > horizon]
    if dry_run or not doomed:
        return sorted(doomed)
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    entries = read_manifest(directory)
    write_manifest(directory, {n: d for n, d in entries.items() if n not in doomed})
    _fsync_dir(directory)
    return sorted(doomed)


@dataclass(frozen=True)
class LoadedBackup:
    """A backup file read and checked: its text, counts, and what the checksum check found."""

    path: str
    text: str
    counts: BackupCounts
    compressed: bool
    checksum: str  # "ok" (manifest matched) | "absent" (no manifest entry)


def load_backup(path: str) -> LoadedBackup:
    """Read a backup (ours .gz, or a plain ``sa-learn --backup`` file) and validate it.

    Checks, in order: the manifest's sha256 if the file's directory lists it, gzip integrity,
    the line structure and format version, and that no seen line is missing (whatever the
    compression: the dump itself must be whole). Nothing here touches the database.
    Raises InvalidBackupError (or BayesError if it cannot be read).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BayesError(f"cannot read {path}: {exc.strerror}") from exc
    directory, name = os.path.split(os.path.abspath(path))
    expected = read_manifest(directory).get(name)
    checksum = "absent"
    if expected is not None:
        if hashlib.sha256(data).hexdigest() != expected:
            raise InvalidBackupError(f"{path}: sha256 does not match {MANIFEST}: the file is "
                                     "damaged or truncated")
        checksum = "ok"
    compressed = data[:2] == b"\x1f\x8b"
    if compressed:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise InvalidBackupError(f"{path}: broken gzip data ({exc}): truncated or "
                                     "corrupt") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBackupError(f"{path}: not a text backup ({exc})") from exc
    try:
        counts = parse_backup(text)
        check_seen(counts)
    except InvalidBackupError as exc:
        raise InvalidBackupError(f"{path}: {exc}") from exc
    return LoadedBackup(path, text, counts, compressed, checksum)
