"""What a check says: a status in the Nagios plugin convention, a figure, what to do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OK, WARN, CRIT, UNKNOWN = "OK", "WARN", "CRIT", "UNKNOWN"
EXIT_CODES = {OK: 0, WARN: 1, CRIT: 2, UNKNOWN: 3}
_SEVERITY = {OK: 0, UNKNOWN: 1, WARN: 2, CRIT: 3}  # what "worst" means on one screen

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``event`` is logged when it turns non-OK, with ``fields``."""

    name: str
    status: str
    figure: str
    action: str = ""
    event: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, str]:
        """The --json object: name, status, figure, action."""
        return {"name": self.name, "status": self.status, "figure": self.figure,
                "action": self.action}


def worst(statuses: Iterable[str]) -> str:
    """The most severe status (CRIT > WARN > UNKNOWN > OK); OK for none."""
    return max(statuses, key=lambda s: _SEVERITY[s], default=OK)


def exit_code(checks: Iterable[Check]) -> int:
    """0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (only when nothing is WARN or CRIT)."""
    return EXIT_CODES[worst(c.status for c in checks)]


def labels(**values: object) -> Labels:
    """A hashable, ordered label set."""
    return tuple((k, str(v)) for k, v in values.items())


class Samples:
    """Metric samples a round of checks produced: name -> {labels: value}."""

    def __init__(self) -> None:
        self.values: dict[str, dict[Labels, float]] = {}

    def set(self, name: str, value: float, **label_values: object) -> None:
        """Set one sample (replacing one with the same labels)."""
        self.values.setdefault(name, {})[labels(**label_values)] = float(value)

    def update(self, other: Samples) -> None:
        """Take every metric of ``other``, replacing whole metrics (not single samples)."""
        for name, samples in other.values.items():
            self.values[name] = dict(samples)

    def get(self, name: str) -> dict[Labels, float]:
        """The samples of one metric (empty if none)."""
        return self.values.get(name, {})


def human_age(seconds: float) -> str:
    """"3d4h", "12m" for figures."""
    s = int(max(0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            rest = s % size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{s // size}{unit}" + (f"{rest // sub[1]}{sub[0]}" if rest >= sub[1] else "")
    return f"{s}s"
