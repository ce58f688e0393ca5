"""Field helpers shared by every schema module."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import Any


def opt(default: Any = dataclasses.MISSING, *, key: str | None = None,
        check: Callable[[Any], object] | None = None, factory: Callable[[], Any] | None = None,
        doc: str = "") -> Any:
    """A dataclass field with its TOML spelling, validator and one-line documentation."""
    meta: dict[str, Any] = {"doc": doc}
    if key:
        meta["key"] = key
    if check:
        meta["check"] = check
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(value: float) -> None:
    """Validator: the number must be > 0."""
    if value <= 0:
        raise ValueError(f"must be greater than 0 (got {float(value):g})")


def non_negative(value: float) -> None:
    """Validator: the number must be >= 0."""
    if value < 0:
        raise ValueError(f"must be 0 or more (got {float(value):g})")


def cron(value: str) -> None:
    """Validator: a crontab expression with crontab's day-of-week meaning."""
    from mailopsd.core.schedule import parse_cron  # checked on load, not imported for defaults

    parse_cron(value)
