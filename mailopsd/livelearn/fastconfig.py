"""The few settings ``learn-enqueue`` needs, read and checked without the full config loader.

learn-enqueue runs once per IMAP move and must answer within 100 ms on a busy server; importing
the whole schema costs more than everything else it does. So it reads the TOML itself and
checks, with the same rules as the schema, only the keys it uses: all of ``[live-learn]``,
``[jobs.learn-spam] max_size`` and ``[logging]``'s target, level, journal_socket and
syslog_identifier. A mistake there is a configuration error (exit 2); the rest of the file is
``mailopsd check-config``'s and the daemon's to judge (the daemon will not start on it, and the
spool keeps what was queued meanwhile). Drop-ins (``mailopsd.d/*.toml`` beside the main file)
are merged as ``core.config.sources`` does: in byte order of their names, tables key by key.
Imports os, tomllib and re only.
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

DEFAULT_SPOOL = "/var/spool/mailopsd/learn"
DROPIN_DIR = "mailopsd.d"  # = core.config.sources.DROPIN_DIR
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
LIVE_KEYS = ("enabled", "spool_dir", "daily_limit", "batch_wait")


class FastConfigError(Exception):
    """The keys learn-enqueue uses are wrong; str() names each dotted key."""


class EnqueueSettings:
    """What learn-enqueue uses (a plain class: dataclasses cost a few ms to import)."""

    journal_socket = "/run/systemd/journal/socket"

    def __init__(self, spool_dir: str = DEFAULT_SPOOL, daily_limit: int = 300,
                 max_size: int = 512000, level: str = "info",
                 journal_socket: str = "/run/systemd/journal/socket",
                 syslog_identifier: str = "mailopsd") -> None:
        self.spool_dir = spool_dir
        self.daily_limit = daily_limit
        self.max_size = max_size
        self.level = level
        self.journal_socket = journal_socket
        self.syslog_identifier = syslog_identifier


def _table(data: dict[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: expected a table")
        return {}
    return value


def _count(table: dict[str, Any], key: str, dotted: str, default: int,
           problems: list[str]) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{dotted}: expected an integer >= 0 (got {value!r})")
        return default
    return value


def _path(table: dict[str, Any], key: str, dotted: str, default: str,
          problems: list[str]) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        problems.append(f"{dotted}: expected an absolute path (got {value!r})")
        return default
    return value


def _toml(raw: bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FastConfigError(f"{source}: (syntax): {exc}") from None


def merge(into: dict[str, Any], over: dict[str, Any]) -> None:
    """Merge ``over`` into ``into``: tables key by key, any other value replaced."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def parse(raw: bytes, source: str = "",
          dropins: tuple[tuple[str, bytes], ...] = ()) -> EnqueueSettings:
    """The settings from a config file's bytes (and its drop-ins' (name, bytes), in order);
    raises FastConfigError listing every problem."""
    data = _toml(raw, source)
    for name, more in dropins:
        merge(data, _toml(more, name))
    return settings(data, source)


def settings(data: dict[str, Any], source: str = "") -> EnqueueSettings:
    """The settings from merged TOML data; raises FastConfigError listing every problem."""
    problems: list[str] = []
    live = _table(data, "live-learn", problems)
    for key in live:
        if key not in LIVE_KEYS:
            problems.append(f"live-learn.{key}: unknown key")
    spool_dir = _path(live, "spool_dir", "live-learn.spool_dir", DEFAULT_SPOOL, problems)
    if spool_dir.rstrip("/") in ("", "/tmp", "/var/tmp") or any(ord(c) < 32 for c in spool_dir):
        problems.append("live-learn.spool_dir: must be a directory of its own (not /, /tmp or "
                        "/var/tmp), without control characters")
    limit = _count(live, "daily_limit", "live-learn.daily_limit", 300, problems)
    if not isinstance(live.get("enabled", False), bool):
        problems.append("live-learn.enabled: expected true or false")
    wait = live.get("batch_wait", 2)
    if isinstance(wait, bool) or not ((isinstance(wait, int | float) and wait >= 0)
                                      or (isinstance(wait, str) and _DURATION.match(wait.lower()))):
        problems.append(f"live-learn.batch_wait: expected a duration such as \"2s\" "
                        f"(got {wait!r})")
    job = _table(_table(data, "jobs", problems), "learn-spam", problems)
    max_size = _count(job, "max_size", "jobs.learn-spam.max_size", 512000, problems)
    log = _table(data, "logging", problems)
    level = log.get("level", "info")
    if level not in ("debug", "info", "warning", "error"):
        problems.append(f"logging.level: expected debug, info, warning or error (got {level!r})")
    if log.get("target", "auto") not in ("auto", "journald", "console", "json"):
        problems.append("logging.target: expected auto, journald, console or json")
    socket = _path(log, "journal_socket", "logging.journal_socket",
                   EnqueueSettings.journal_socket, problems)
    ident = log.get("syslog_identifier", "mailopsd")
    if not isinstance(ident, str):
        problems.append("logging.syslog_identifier: expected a string")
        ident = "mailopsd"
    if problems:
        raise FastConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(problems))
    return EnqueueSettings(spool_dir, limit, max_size, str(level), socket, ident)


def dropin_files(main: str) -> list[str]:
    """The main file's drop-ins, in byte order of their names (as core.config.sources)."""
    d = os.path.join(os.path.dirname(main) or ".", DROPIN_DIR)
    try:
        with os.scandir(d) as it:
            names = [e.name for e in it if e.name.endswith(".toml")
                     and not e.name.startswith(".") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise FastConfigError(f"{d}: (file): cannot read {d}: {exc.strerror}") from None
    return [os.path.join(d, n) for n in sorted(names, key=os.fsencode)]


def all_readable(main: str) -> bool:
    """Whether this user can read the main file and every drop-in."""
    try:
        return os.access(main, os.R_OK) and all(os.access(p, os.R_OK)
                                                 for p in dropin_files(main))
    except FastConfigError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise FastConfigError(f"{path}: (file): cannot read {path}: {exc.strerror}") from None


def load(path: str) -> EnqueueSettings:
    """Read and parse a config file and its drop-ins; raises FastConfigError."""
    raw = _read(path)
    return parse(raw, path, tuple((p, _read(p)) for p in dropin_files(path)))
