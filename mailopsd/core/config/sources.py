"""Where the configuration comes from: the main file, then its drop-in directory.

Drop-ins are ``<directory of the main file>/mailopsd.d/*.toml`` (only ``*.toml``), read in byte
order of their names; each merges over what came before key by key: tables are merged, any
other value (lists included) is replaced. Every key remembers the file that set it last, so a
problem can name the file to fix.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailopsd.core.errors import ConfigError, ConfigProblem

DROPIN_DIR = "mailopsd.d"


@dataclass
class Sources:
    """The merged TOML data, the files read in order, and which file set each dotted key."""

    data: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)

    def file_of(self, dotted: str) -> str | None:
        """The file that set ``dotted`` (or the nearest table above it that one file set)."""
        key = dotted.split("[", 1)[0]
        while key:
            if key in self.origin:
                return self.origin[key]
            key = key.rpartition(".")[0]
        return None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted_key(prefix: str, key: str) -> str:
    """``prefix.key`` as the admin would write it in TOML: a key that is not bare is quoted."""
    part = key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def dropin_dir(main: str | os.PathLike[str]) -> Path:
    """The drop-in directory that belongs to a main config file."""
    return Path(main).parent / DROPIN_DIR


def dropin_files(main: str | os.PathLike[str]) -> list[Path]:
    """The drop-in files of a main config, in byte order of their names ([] if no directory).

    Raises ConfigError if the directory exists but cannot be listed.
    """
    d = dropin_dir(main)
    try:
        names = [e.name for e in os.scandir(d) if e.name.endswith(".toml")
                 and not e.name.startswith(".") and e.is_file()]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as exc:
        raise ConfigError([ConfigProblem("(file)", _cannot_read(d, exc))], str(d)) from None
    return [d / n for n in sorted(names, key=os.fsencode)]


def all_readable(main: str | os.PathLike[str]) -> bool:
    """Whether this process can read the main file and every drop-in (post-email runs as a
    mail user and falls back to the defaults rather than half a configuration)."""
    if not os.access(main, os.R_OK):
        return False
    d = dropin_dir(main)
    if not d.exists():
        return True
    try:
        return all(os.access(p, os.R_OK) for p in dropin_files(main))
    except ConfigError:
        return False


def _cannot_read(path: Path, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return f"cannot read {path}: {why} (run as root)"
    return f"cannot read {path}: {why}"


def read_toml(path: Path) -> dict[str, Any]:
    """One TOML file; raises ConfigError naming the file (unreadable, not UTF-8, bad syntax)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem("(file)", _cannot_read(path, exc))],
                          str(path)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem("(syntax)", f"not UTF-8 text: {exc.reason} at byte "
                                         f"{exc.start}")], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem("(syntax)", str(exc))], str(path)) from None


def merge(into: dict[str, Any], over: dict[str, Any], origin: dict[str, str], source: str,
          prefix: str = "") -> None:
    """Merge ``over`` into ``into`` key by key (tables recursively), noting each key's file."""
    for key, value in over.items():
        dotted = dotted_key(prefix, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value, origin, source, dotted)
            continue
        into[key] = _copy(value)
        for k in [k for k in origin if k.startswith(dotted + ".")]:
            del origin[k]
        origin[dotted] = source
        if isinstance(value, dict):
            _mark(value, origin, source, dotted)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _mark(table: dict[str, Any], origin: dict[str, str], source: str, prefix: str) -> None:
    for key, value in table.items():
        dotted = dotted_key(prefix, key)
        origin[dotted] = source
        if isinstance(value, dict):
            _mark(value, origin, source, dotted)


def read_sources(main: str | os.PathLike[str]) -> Sources:
    """Read the main file and its drop-ins and merge them; raises ConfigError naming the file.

    Every unreadable or unparsable file is reported, not just the first.
    """
    main_path = Path(main)
    out = Sources()
    problems: list[ConfigProblem] = []
    paths = [main_path]
    try:
        paths += dropin_files(main_path)
    except ConfigError as exc:
        problems += [ConfigProblem(p.key, p.message) for p in exc.problems]
    for path in paths:
        try:
            data = read_toml(path)
        except ConfigError as exc:
            if path == main_path:
                raise
            problems += [ConfigProblem(p.key, f"{p.message} [in {path}]") for p in exc.problems]
            continue
        out.files.append(str(path))
        merge(out.data, data, out.origin, str(path))
    if problems:
        raise ConfigError(problems, str(main_path))
    return out
