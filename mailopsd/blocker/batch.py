"""The ban policy's counting step, written once as a loop over events.

``BanPolicy.count`` (the live daemon, one match at a time) calls ``count_events`` with one
event; ``mailopsd scan-log`` calls it with a block of thousands, where a call per match and its
attribute look-ups were a third of the scan: the loop holds the policy's tables in locals. It
is the policy's own code (it reads and writes BanPolicy's state; the rare steps -- bringing back
compacted hits, deciding a ban, pruning -- are the policy's methods), kept in this module so
that policy.py stays readable and imports it without a circle.

``count_events`` is the C extension ``_fastcount.count`` where it is built: the same loop over
the same objects, step by step (``blocker/_fastcount.c``). ``_count_events_py`` below is the
fallback and the reference it must equal (``tests/unit/test_blocker_fastcount.py``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

from mailopsd.core.config.rule_names import AUTHENTICATED

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from mailopsd.blocker.policy import BanDecision, BanPolicy

_NEVER = -math.inf
# (rule, address, when) for a match; (rule, None, 0.0) for a keyword line the rule rejected
Event = tuple[str, "str | None", float]


def _count_events_py(policy: BanPolicy, events: Iterable[Event], out: list[BanDecision]
                     ) -> None:
    """Count every event into ``policy`` in order, appending its ban decisions to ``out``
    (at most one per ban, never for an ignored address); an event without an address counts
    as an unmatched line of its rule."""
    p = policy
    matches, last, unmatched = p.matches, p._last_match, p.unmatched
    rules, banned, auth, tables = p.rules, p._banned, p._auth, p._hits
    exempting, exempt_for = p._exempting, p.config.auth_exempt
    compacted, dirty, ignore = p._compact, p._dirty, p.ignore
    no_rdns = tables.get("no-rdns")  # present whenever exempting (no-rdns enabled)
    for rule, ip, when in events:
        if ip is None:
            unmatched[rule] = unmatched.get(rule, 0) + 1
            continue
        if type(when) is not float:  # single hits are stored as bare floats
            when = float(when)
        if when > p._newest:
            p._newest = when
        matches[rule] = matches.get(rule, 0) + 1
        if when > last.get(rule, _NEVER):
            last[rule] = when
        if rule == AUTHENTICATED:
            if exempting and no_rdns is not None:
                if when > auth.get(ip, _NEVER):
                    auth[ip] = when
                # the no-rdns hits of this user's own earlier connections do not count either
                if compacted.n:
                    p._uncompact(ip)
                no_rdns.pop(ip, None)
                if dirty is not None:
                    dirty.add(ip)
            continue
        spec = rules.get(rule)
        if spec is None:
            continue
        if ip in banned:
            until = banned[ip]
            if until is None or when < until:
                continue  # already banned: one decision per ban
            del banned[ip]
        if rule == "no-rdns":
            t = auth.get(ip)
            if t is not None and when - t <= exempt_for:
                p.exempted += 1
                continue
        table = tables[rule]
        old = table.get(ip)
        if old is None and compacted.n and p._uncompact(ip):
            old = table.get(ip)
        if dirty is not None:
            dirty.add(ip)
        if old is None:
            if spec.maxretry > 1:
                # most addresses are seen once: a bare float, not a list (memory bound)
                table[ip] = when
                p._tick()
                continue
            hits = [when]
        else:
            if type(old) is float:
                hits = [old, when] if when >= old else [when, old]
                table[ip] = hits
            else:
                hits = old  # type: ignore[assignment]
                if when >= hits[-1]:
                    hits.append(when)
                else:  # lines from several Exim processes can be slightly out of order
                    bisect.insort(hits, when)
            # the window is (newest - findtime, newest]: a hit exactly findtime old is out
            lo = hits[-1] - spec.findtime
            drop = bisect.bisect_right(hits, lo)
            drop = max(drop, len(hits) - spec.maxretry)
            if drop > 0:
                del hits[:drop]
        if len(hits) >= spec.maxretry:
            # the ignore list is consulted only here, at the threshold: a scan meets tens of
            # thousands of one-off addresses, and an ignored one must only never be banned
            if ignore.contains(ip):
                p.ignored[rule] = p.ignored.get(rule, 0) + 1
                table.pop(ip, None)  # with maxretry 1 the first hit was never stored
                continue
            out.append(p._decide(ip, spec, hits))
            continue
        p._tick()


try:  # the same loop in C; this module's loop is its reference
    from mailopsd.blocker import _fastcount
except ImportError:  # not built: the Python loop, same decisions
    _fastcount = None  # type: ignore[assignment]

count_events: Callable[[BanPolicy, Iterable[Event], list[BanDecision]], None] = \
    _count_events_py if _fastcount is None else _fastcount.count
