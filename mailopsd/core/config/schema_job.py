"""JobSettings: what every scheduled job's table has (its own module: the blocker's schema, which
scan-log loads on its timed start-up, needs none of it; a dataclass costs ~0.4 ms to create)."""

from __future__ import annotations

import dataclasses

from mailopsd.core.config.common import cron, opt, positive
from mailopsd.core.config.types import Duration


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """What every scheduled job has: whether and when it runs, and how long it may take."""

    enabled: bool = opt(True, doc="run this job on its schedule")
    schedule: str = opt("0 4 * * *", check=cron, doc="crontab expression (crontab weekdays)")
    random_delay: Duration = opt(Duration(0), doc="random delay added to each scheduled start")
    timeout: Duration = opt(Duration(7200), check=positive, doc="the job is cancelled after this")
    catch_up: bool = opt(True, doc="run soon after start if a scheduled run was missed")
