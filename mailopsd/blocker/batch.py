"""scan-log's ban policy: ``BanPolicy.count`` for a whole block of events in one loop.

scan-log feeds tens of thousands of events per second of its run; ``count``'s call and its
attribute look-ups were a third of the scan. ``feed_events`` is ``count`` inlined into a loop
over the events with the policy's tables held in locals: the same steps in the same order
(the rare ones -- bringing back compacted hits, deciding a ban, pruning -- call the policy's
own methods), so the decisions are ``count``'s, as the unit tests check against the live
policy fed line by line.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from mailopsd.blocker.policy import _NEVER, BanDecision, BanPolicy
from mailopsd.core.config.rule_names import AUTHENTICATED

# (rule, address, when) for a match; (rule, None, 0.0) for a keyword line the rule rejected
Event = tuple[str, "str | None", float]


class BatchPolicy(BanPolicy):
    """A BanPolicy that also counts a block of events at once (scan-log)."""

    def feed_events(self, events: Iterable[Event], out: list[BanDecision]) -> None:
        """``count`` every event in order, appending its decisions to ``out``; an event
        without an address counts as an unmatched line of its rule."""
        matches, last, unmatched = self.matches, self._last_match, self.unmatched
        rules, banned, auth, tables = self.rules, self._banned, self._auth, self._hits
        exempting, exempt_for = self._exempting, self.config.auth_exempt
        compacted, dirty = self._compact, self._dirty
        no_rdns = tables.get("no-rdns")
        ignore = self.ignore
        for rule, ip, when in events:
            if ip is None:
                unmatched[rule] = unmatched.get(rule, 0) + 1
                continue
            if type(when) is not float:
                when = float(when)
            if when > self._newest:
                self._newest = when
            matches[rule] = matches.get(rule, 0) + 1
            if when > last.get(rule, _NEVER):
                last[rule] = when
            if rule == AUTHENTICATED:
                if exempting and no_rdns is not None:  # exempting implies no-rdns is enabled
                    if when > auth.get(ip, _NEVER):
                        auth[ip] = when
                    if compacted.n:
                        self._uncompact(ip)
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
                    continue
                del banned[ip]
            if rule == "no-rdns":
                t = auth.get(ip)
                if t is not None and when - t <= exempt_for:
                    self.exempted += 1
                    continue
            table = tables[rule]
            old = table.get(ip)
            if old is None and compacted.n and self._uncompact(ip):
                old = table.get(ip)
            if dirty is not None:
                dirty.add(ip)
            if old is None:
                if spec.maxretry > 1:
                    table[ip] = when
                    since = self._since_prune + 1
                    if since >= self._prune_at or not since & 1023:
                        self._tick()  # a sweep or a compaction may be due
                    else:
                        self._since_prune = since
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
                    else:
                        bisect.insort(hits, when)
                lo = hits[-1] - spec.findtime
                drop = bisect.bisect_right(hits, lo)
                drop = max(drop, len(hits) - spec.maxretry)
                if drop > 0:
                    del hits[:drop]
            if len(hits) >= spec.maxretry:
                if ignore.contains(ip):
                    self.ignored[rule] = self.ignored.get(rule, 0) + 1
                    table.pop(ip, None)
                    continue
                out.append(self._decide(ip, spec, hits))
                continue
            since = self._since_prune + 1
            if since >= self._prune_at or not since & 1023:
                self._tick()
            else:
                self._since_prune = since
