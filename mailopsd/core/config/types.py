"""Value types a config file may hold beyond TOML's own: durations, absolute paths, CIDRs."""

from __future__ import annotations

import functools
import ipaddress
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


class Duration(float):
    """Seconds, written in a config as a number or a string such as "90s", "10m", "2h", "7d"."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        """Return the duration in seconds; raises ValueError for anything else."""
        if isinstance(value, bool):
            raise ValueError("expected a duration such as \"10m\", \"2h\" or a number of seconds")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError(f"expected a duration of 0 or more (got {value:g})")
            return cls(float(value))
        if isinstance(value, str):
            m = _DURATION.match(value.lower())
            if m:
                return cls(float(m.group(1)) * _UNITS[m.group(2)])
        shown = f"\"{value}\"" if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(f"expected a duration such as \"10m\", \"2h\", \"7d\" (got {shown})")

    def __repr__(self) -> str:
        return f"Duration({float(self)!r})"


@functools.lru_cache(maxsize=256)  # tables and ban reasons repeat a few lengths hundreds of times
def format_duration(seconds: float | None) -> str:
    """Render seconds compactly ("1d2h", "45s") for tables and events; None means permanent."""
    if seconds is None:
        return "permanent"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts[:2])


class AbsPath(str):
    """An absolute filesystem path (kept as str so it compares and prints plainly)."""

    @classmethod
    def parse(cls, value: object) -> AbsPath:
        """Return the path; raises ValueError unless it is an absolute path string."""
        if not isinstance(value, str) or not value:
            raise ValueError("expected an absolute path string")
        if "\x00" in value or not value.startswith("/"):  # PurePosixPath's is_absolute()
            raise ValueError(f"expected an absolute path (got \"{value}\")")
        return cls(value)


class Network(str):
    """An IPv4 or IPv6 network in CIDR notation, or a single address."""

    @classmethod
    def parse(cls, value: object) -> Network:
        """Return the normalised network; raises ValueError if it is not one, or if it has
        host bits set (198.51.100.7/24: the admin meant the address or the /24, say which)."""
        if not isinstance(value, str):
            raise ValueError("expected a CIDR string such as \"192.0.2.0/24\"")
        text = value.strip()
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise ValueError(f"expected an IP address or CIDR such as \"192.0.2.0/24\" "
                             f"(got \"{value}\"): {exc}") from None
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            addr = text.split("/", 1)[0]
            raise ValueError(f"\"{value}\" has host bits set: write \"{loose}\" for the "
                             f"network or \"{addr}\" for the one address") from None
        return cls(str(loose))


class KeyedProblems(ValueError):
    """Raised by a validator of a table of tables: (sub-key, message) pairs, reported each
    under its own dotted key (``blocker.rules.no_rdns``) rather than the table's."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))
        self.problems = problems
