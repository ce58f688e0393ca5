# Types of the C extension (mailopsd/blocker/_fastcount.c) for mypy.
from collections.abc import Iterable

from mailopsd.blocker.batch import Event
from mailopsd.blocker.policy import BanDecision, BanPolicy

AUTHENTICATED: str

def count(policy: BanPolicy, events: Iterable[Event], out: list[BanDecision]) -> None: ...
# blocker.batch._count_events_py in C: the same state changes and decisions, in order
