"""The ban policy: matches counted per rule and IP on the log's own clock -> ban decisions.

fail2ban's vocabulary: ``maxretry`` matches within ``findtime`` ban for ``bantime``; repeat
offenders get ``bantime * bantime_factor ** previous_bans`` (capped by ``bantime_max``, or
permanent from the ``permanent_after``-th ban). Counting uses each line's own timestamp, so a
replay after a restart or a scan of an old log decides exactly like the live run did.

Memory stays bounded: per rule and IP only the last ``maxretry`` timestamps are kept, and every
so often counters whose newest hit left the window are dropped (amortised O(1) per match).
Past COMPACT_AT addresses in the dicts, the ones seen at most twice move to flat arrays
(``blocker.compact``: ~55 B instead of ~420 B each) and come back when seen again. Across
restarts (``track_changes``): addresses whose counts changed are kept for ``take_changes``,
saved with the log position (``blocker.counts``). Not thread-safe: the caller serialises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mailopsd.blocker.batch import count_events
from mailopsd.blocker.compact import CompactHits, Hit, ip_key
from mailopsd.blocker.parse import LineParser, Match, line_time
from mailopsd.blocker.rules import RuleSpec, rule_specs
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.config.types import format_duration

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.core.config.schema_blocker import BlockerConfig

PRUNE_MIN = 20000  # matches between two sweeps at least
# addresses in the dicts before the quiet ones move to the arrays: at 16,384 the bench's 1M-line
# day (just over that many live) compacted twice and brought ~36k back (~60% of its scan);
# 1,000,000 addresses still take 100.7 MB in the daemon, 80.8 MB in scan-log (issue 12: <= 120)
COMPACT_AT = 32768
_NEVER = -math.inf


@dataclass(frozen=True)
class BanDecision:
    """The policy's verdict: ban ``ip`` for ``duration`` seconds (None = permanent)."""

    ip: str
    rule: str
    count: int
    duration: float | None
    reason: str
    first_seen: float  # log time of the first counted match
    last_seen: float  # log time of the match that crossed the threshold

    def expired(self, now: float) -> bool:
        """True if the ban would already be over at ``now`` (a replay of old lines)."""
        return self.duration is not None and self.last_seen + self.duration <= now


class BanPolicy:
    """Counts matches and decides bans; see the module docstring."""

    def __init__(self, config: BlockerConfig, ignore: IgnoreList, *,
                 previous_bans: Callable[[str], int] = lambda ip: 0) -> None:
        self.config = config
        self.ignore = ignore
        self.previous_bans = previous_bans
        self.specs: dict[str, RuleSpec] = rule_specs(config)
        self.parser = LineParser(self.specs, ipv6_aggregate=config.ipv6_aggregate)
        self.rules: dict[str, RuleSpec] = {n: s for n, s in self.specs.items() if s.enabled}
        # rule -> ip -> the newest hits (at most maxretry), or one bare float for a single hit
        self._hits: dict[str, dict[str, float | list[float]]] = {n: {} for n in self.rules}
        self._names = list(self.rules)  # rule number (in the compact arrays) -> name
        self._compact = CompactHits()
        self._compact_at = COMPACT_AT
        self._banned: dict[str, float | None] = {}  # ip -> until (None = permanent)
        self._auth: dict[str, float] = {}  # ip -> newest successful AUTH (log time)
        # logins matter only to no-rdns, and only with an exemption time
        self._exempting = config.auth_exempt > 0 and "no-rdns" in self.rules
        self._times: dict[str, int] = {}  # bans decided by this policy per ip
        self._newest = 0.0
        self._since_prune = 0
        self._prune_at = PRUNE_MIN
        # statistics for scan-log and the silent-rule warning
        self.lines = 0
        self.matches: dict[str, int] = dict.fromkeys([*self.specs, AUTHENTICATED], 0)
        self.ignored: dict[str, int] = dict.fromkeys(self.specs, 0)  # bans the ignore list stopped
        self.unmatched: dict[str, int] = dict.fromkeys([*self.specs, AUTHENTICATED], 0)
        self.exempted = 0
        self._first_line: str | None = None
        self._last_line: str | None = None
        self._last_match: dict[str, float] = {}
        self._dirty: set[str] | None = None  # addresses whose counts changed (track_changes)
        self.pruned_before: float | None = None  # counts older than this were dropped

    # -- input --------------------------------------------------------------------------------
    def feed_line(self, line: str) -> BanDecision | None:
        """Parse one log line and count it; returns a decision when it crosses a threshold."""
        self.lines += 1
        return self.feed_candidate(line)

    def feed_candidate(self, line: str, prefiltered: bool = False) -> BanDecision | None:
        """``feed_line`` without counting the line in ``lines`` (scan-log counts in bulk and
        passes ``prefiltered`` for lines it found by keyword)."""
        if self._first_line is None:
            self._first_line = line
        self._last_line = line
        rule, ip, when = self.parser.fields(line, prefiltered)
        if ip is None:
            if rule is not None:
                self.unmatched[rule] = self.unmatched.get(rule, 0) + 1
            return None
        return self.count(rule, ip, when)  # type: ignore[arg-type]

    def feed_match(self, m: Match) -> BanDecision | None:
        """Count one match; returns a decision once per ban (never for an ignored address)."""
        return self.count(m.rule, m.ip, m.when)

    def count(self, rule: str, ip: str, when: float) -> BanDecision | None:
        """``feed_match`` without a Match object: ``blocker.batch.count_events`` for one event
        (the counting itself is written once, there, as scan-log's loop)."""
        out: list[BanDecision] = []
        count_events(self, ((rule, ip, when),), out)
        return out[0] if out else None

    def _tick(self) -> None:
        self._since_prune += 1
        if self._since_prune >= self._prune_at:
            self.prune()
        if not self._since_prune & 1023 and \
                sum(len(t) for t in self._hits.values()) >= self._compact_at:
            self.compact()

    def compact(self) -> int:
        """Move the addresses with at most two hits from the dicts to the compact arrays;
        returns how many moved."""
        seen: dict[str, int] = {}
        for table in self._hits.values():
            for ip, h in table.items():
                seen[ip] = seen.get(ip, 0) + (1 if type(h) is float else len(h))  # type: ignore[arg-type]
        moved = 0
        for ip, n in seen.items():
            k = ip_key(ip) if n <= 2 else None
            if k is None:
                continue
            hits: list[Hit] = []
            for number, table in enumerate(self._hits.values()):
                got = table.pop(ip) if ip in table else None
                if isinstance(got, float):
                    hits.append((number, got))
                elif got is not None:
                    hits.extend((number, t) for t in got)
            self._compact.put(k, hits)
            moved += 1
        left = sum(len(t) for t in self._hits.values())
        self._compact_at = max(COMPACT_AT, 2 * left)  # busy addresses stay: no quadratic work
        return moved

    def _uncompact(self, ip: str) -> bool:
        """Bring ``ip``'s hits back from the compact arrays into the dicts; False if none."""
        k = ip_key(ip)
        hits = None if k is None else self._compact.take(k)
        if not hits:
            return False
        for number, t in sorted(hits, key=lambda h: h[1]):
            table = self._hits[self._names[number]]
            old = table.get(ip)
            if old is None:
                table[ip] = t
            elif type(old) is float:
                table[ip] = [old, t]
            else:
                old.append(t)  # type: ignore[union-attr]
        return True

    def _decide(self, ip: str, spec: RuleSpec, hits: list[float]) -> BanDecision:
        try:
            stored = int(self.previous_bans(ip))
        except Exception as exc:  # the store is the caller's: a failure must not lose the ban
            from mailopsd.core.logs import get_logger

            get_logger("blocker").error("previous_bans_failed", ip=ip, error=repr(exc))
            stored = 0
        previous = self._times.get(ip, 0)
        if stored > previous:
            previous = stored
        duration = self.ban_duration(spec, previous)
        for table in self._hits.values():
            table.pop(ip, None)
        self._times[ip] = previous + 1
        last = hits[-1]
        self._banned[ip] = None if duration is None else last + duration
        # scan-log decides hundreds of bans a second: no keyword arguments (format_duration is
        # cached)
        reason = f"{len(hits)} {spec.name} matches within {format_duration(spec.findtime)}"
        if previous:
            reason += f"; ban #{previous + 1} of this address"
        return BanDecision(ip, spec.name, len(hits), duration, reason, hits[0], last)

    def ban_duration(self, spec: RuleSpec, previous: int) -> float | None:
        """The ban length for an IP banned ``previous`` times before (None = permanent)."""
        cfg = self.config
        if spec.bantime is None or (cfg.permanent_after and previous + 1 >= cfg.permanent_after):
            return None
        cap = max(spec.bantime, float(cfg.bantime_max))
        factor = cfg.bantime_factor
        if previous <= 0 or factor <= 1:
            return spec.bantime
        # compare logarithms: factor ** previous may overflow a float
        if previous * math.log(factor) >= math.log(cap / spec.bantime):
            return cap
        return min(spec.bantime * factor ** previous, cap)

    # -- what the enforcement side tells us ---------------------------------------------------
    def forget(self, ip: str) -> None:
        """Drop what is known about ``ip`` (after an unban or a manual removal)."""
        self._banned.pop(ip, None)
        if self._compact.n:
            self._uncompact(ip)
        for table in self._hits.values():
            table.pop(ip, None)
        if self._dirty is not None:
            self._dirty.add(ip)

    def note_banned(self, ip: str, until: float | None) -> None:
        """``ip`` is banned until ``until`` (None = permanent): do not decide it again."""
        self._banned[ip] = until
        if self._compact.n:
            self._uncompact(ip)
        for table in self._hits.values():
            table.pop(ip, None)
        if self._dirty is not None:
            self._dirty.add(ip)

    # -- counts across restarts ---------------------------------------------------------------
    def track_changes(self) -> None:
        """Remember which addresses' counts change, for ``take_changes``."""
        if self._dirty is None:
            self._dirty = set()

    def counts_of(self, ip: str) -> dict[str, list[float]]:
        """The hits still counted for ``ip``, per rule (``authenticated``: its last login)."""
        out: dict[str, list[float]] = {}
        k = ip_key(ip) if self._compact.n else None
        for number, when in (self._compact.peek(k) or []) if k is not None else []:
            out.setdefault(self._names[number], []).append(when)
        for name, table in self._hits.items():
            h = table.get(ip)
            if h is not None:
                out[name] = [h] if type(h) is float else list(h)  # type: ignore[arg-type]
        t = self._auth.get(ip)
        if t is not None:
            out[AUTHENTICATED] = [t]
        return out

    def take_changes(self) -> list[tuple[str, dict[str, list[float]]]]:
        """(address, counts) of every address changed since the last call ({} = none left)."""
        if not self._dirty:
            return []
        dirty, self._dirty = self._dirty, set()
        return [(ip, self.counts_of(ip)) for ip in dirty]

    def mark_changed(self, ips: list[str], pruned_before: float | None) -> None:
        """Changes whose saving failed: carry them in the next ``take_changes``."""
        if self._dirty is not None:
            self._dirty.update(ips)
        if pruned_before is not None and self.pruned_before is None:
            self.pruned_before = pruned_before

    def load_counts(self, ip: str, counts: dict[str, list[float]]) -> None:
        """Put back saved hits of one address (rules no longer enabled are ignored)."""
        for name, times in counts.items():
            if not times:
                continue
            newest = max(times)
            if newest > self._newest:
                self._newest = newest
            if name == AUTHENTICATED:
                if self._exempting and newest > self._auth.get(ip, _NEVER):
                    self._auth[ip] = newest
                continue
            spec = self.rules.get(name)
            if spec is None:
                continue
            times = sorted(times)[-spec.maxretry:]
            self._hits[name][ip] = float(times[0]) if len(times) == 1 else \
                [float(t) for t in times]

    # -- upkeep and reporting -----------------------------------------------------------------
    def prune(self) -> int:
        """Drop counters, exemptions and bans that ended before the newest log time seen."""
        newest, dropped = self._newest, 0
        for name, table in self._hits.items():
            lo = newest - self.rules[name].findtime
            old = [ip for ip, h in table.items()
                   if (h if type(h) is float else h[-1]) <= lo]  # type: ignore[index]
            for ip in old:
                del table[ip]
            dropped += len(old)
        exempt = float(self.config.auth_exempt)
        for ip in [ip for ip, t in self._auth.items() if newest - t > exempt]:
            del self._auth[ip]
        for ip in [ip for ip, u in self._banned.items() if u is not None and u <= newest]:
            del self._banned[ip]
        if self._compact.n:
            dropped += self._compact.prune([newest - self.rules[n].findtime
                                            for n in self._names])
        longest = max([float(s.findtime) for s in self.rules.values()] + [exempt])
        self.pruned_before = newest - longest
        self._since_prune = 0
        # amortised: a sweep costs O(addresses held), so sweep once per as many matches
        self._prune_at = max(PRUNE_MIN, sum(len(t) for t in self._hits.values())
                             + self._compact.n)
        return dropped

    def tracked(self) -> int:
        """How many distinct addresses are being counted right now."""
        keys: set[str] = set()
        for table in self._hits.values():
            keys.update(table)
        return len(keys) + self._compact.n

    def stale_rules(self, now: float) -> list[str]:
        """Enabled rules that matched nothing for ``silence_warning`` while lines kept coming.

        "Lines kept coming" means the newest line read is itself within ``silence_warning`` of
        ``now``. Times are the log's own. Returns every currently silent rule (a pure query:
        the caller decides how often to warn); [] when silence_warning is 0.
        """
        silence = float(self.config.silence_warning)
        if silence <= 0 or self._last_line is None or self._first_line is None:
            return []
        last = line_time(self._last_line)
        first = line_time(self._first_line)
        if last is None or now - last[0] >= silence:
            return []
        start = first[0] if first is not None else last[0]
        return [name for name in self.rules
                if now - max(self._last_match.get(name, -math.inf), start) >= silence]
