"""Crontab expressions with crontab's meaning, turned into APScheduler 3 triggers.

APScheduler's ``CronTrigger.from_crontab("0 3 * * 0")`` fires on *Monday*: it numbers weekdays
from Monday = 0, while crontab(5) numbers them from Sunday = 0 (7 is Sunday too). We expand the
day-of-week field ourselves into an explicit list of day names, which both agree on.
Crontab also ORs day-of-month with day-of-week when both are restricted; APScheduler ANDs them,
so such an expression is rejected rather than silently meaning something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # apscheduler is imported lazily: the CLI's --help must stay fast
    from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FULL_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELD_OK = re.compile(r"^[0-9a-z*/,\-]+$")


@dataclass(frozen=True)
class CronSpec:
    """A validated crontab expression, as fields APScheduler understands."""

    expression: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str

    def trigger(self, timezone: tzinfo | None = None, jitter: float | None = None) -> CronTrigger:
        """Build the APScheduler trigger (imports APScheduler on first use)."""
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger(minute=self.minute, hour=self.hour, day=self.day, month=self.month,
                           day_of_week=self.day_of_week, timezone=timezone,
                           jitter=int(jitter) if jitter else None)

    def next_after(self, when: datetime) -> datetime | None:
        """The first fire time strictly after ``when`` (an aware datetime)."""
        trig = self.trigger(timezone=when.tzinfo)
        from datetime import timedelta

        return trig.get_next_fire_time(None, when + timedelta(microseconds=1))


def _expand_dow(field: str) -> list[int]:
    """Expand a crontab day-of-week field into crontab numbers 0..6 (Sunday = 0)."""
    days: set[int] = set()
    for part in field.split(","):
        if not part:
            raise ValueError("empty item in day-of-week list")
        step = 1
        if "/" in part:
            part, step_s = part.split("/", 1)
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"bad step {step_s!r} in day-of-week")
            step = int(step_s)
        if part == "*":
            lo, hi = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = _dow_number(a), _dow_number(b)
            if hi == 0 and b.strip() in ("7",):
                hi = 7
            if lo > hi:
                raise ValueError(f"day-of-week range {part!r} runs backwards")
        else:
            lo = hi = _dow_number(part)
            if step != 1:
                hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return sorted(days)


def _dow_number(token: str) -> int:
    token = token.strip()
    if token.isdigit():
        n = int(token)
        if not 0 <= n <= 7:
            raise ValueError(f"day-of-week {n} out of range 0-7")
        return 0 if n == 7 else n
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    if token in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(token)
    raise ValueError(f"unknown day-of-week {token!r} (use 0-7 or sun..sat)")


def parse_cron(expression: str) -> CronSpec:
    """Validate a 5-field crontab expression (or @daily & co); raises ValueError saying why."""
    if not isinstance(expression, str):
        raise ValueError("expected a crontab expression string such as \"30 4 * * *\"")
    expr = expression.strip().lower()
    expr = _MACROS.get(expr, expr)
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 crontab fields (minute hour day month weekday), got "
                         f"{len(fields)} in {expression!r}")
    for f in fields:
        if not _FIELD_OK.match(f):
            raise ValueError(f"invalid characters in crontab field {f!r}")
    minute, hour, day, month, dow = fields
    if day not in ("*", "?") and dow != "*":
        raise ValueError("restricts both day-of-month and day-of-week, which crontab ORs and "
                         "APScheduler would AND; use one of them")
    for name in _MONTHS:
        month = month.replace(name, str(_MONTHS.index(name) + 1))
    dow_out = "*" if dow == "*" else ",".join(DAY_NAMES[d] for d in _expand_dow(dow))
    spec = CronSpec(expression.strip(), minute, hour, day, month, dow_out)
    try:
        spec.trigger()
    except ValueError as exc:  # APScheduler's own checks on minute/hour/day/month
        raise ValueError(f"invalid crontab expression {expression!r}: {exc}") from None
    return spec
