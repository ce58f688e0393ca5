"""Exim mainlog lines -> Match(rule, ip, when): the blocker's parser.

Lines are hostile (HELO names, addresses, commands and subjects are chosen by the client), so:
- a cheap substring prefilter runs before any regex; most traffic lines never reach a regex;
- every pattern is anchored at the start of the message text, and the client address is taken
  only from the position Exim prints it in (the bracket that ends the host field), never from
  text the client controls; ambiguous lines produce no match (no match = no ban);
- an address that does not parse as IPv4/IPv6 produces no match.
The timestamp is the line's own (``YYYY-MM-DD HH:MM:SS[.mmm][ +ZZZZ][ [pid]]``, local time when
no zone is logged), so replays count exactly like live lines.
"""

from __future__ import annotations

import _socket  # socket's C functions: socket.py's enum set-up costs ~1 ms of scan-log's start-up
import functools
import ipaddress
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mailopsd.blocker import grammar
from mailopsd.blocker.rules import RuleSpec
from mailopsd.core.config.rule_names import AUTHENTICATED


@dataclass(frozen=True)
class Match:
    """One piece of evidence: which rule matched which client, at the line's own time."""

    rule: str  # e.g. "no-rdns", or AUTHENTICATED for a successful AUTH
    ip: str  # normalised address, or "net/64" when IPv6 aggregation is on
    when: float  # epoch seconds from the log line's timestamp


# Literal substrings: a line containing none of them cannot match a built-in rule.
BUILTIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "no-rdns": ("no host name found for IP address ", "no IP address found for host "),
    "auth-failed": (" authenticator failed for ",),
    "relay-denied": ("relay not permitted",),
    "sync-error": ("synchronization error",),
    "nonmail": ("dropped: too many ",),
    AUTHENTICATED: (" A=",),
}

# Exim message ids: 1xVyPz-0004vj-3B (4.96), 1xVyPz-00000004vj-3Bcd (4.97+): 6 base-62 chars,
# then two more parts whose lengths changed between versions
_EXIM_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{4,}-[0-9A-Za-z]{2,}"
_PREFIX = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d):(\d\d)(?:\.(\d{1,6}))?(?: ([+-])(\d\d)(\d\d))?"
    r"(?: \[\d+(?::\d+)?\])?"  # +pid
    r" (?:" + _EXIM_ID + r" )?",
    re.ASCII)
def normalise_ip(text: str) -> str | None:
    """The canonical text of an IPv4/IPv6 address (v4-mapped IPv6 -> IPv4), None if invalid."""
    if not text or len(text) > 45:  # checked before the cache: it must not keep junk
        return None
    return _normalise(text)


@functools.lru_cache(maxsize=4096)  # repeat offenders and logins; one-off scanners miss it
def _normalise(text: str) -> str | None:
    if "%" in text:
        return None
    if ":" not in text:
        # inet_pton takes only the strict dotted quad, whose text is already canonical
        try:
            _socket.inet_pton(_socket.AF_INET, text)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return None
        return None if text == "0.0.0.0" else text
    # the C functions first (ipaddress costs ~3 us an address): glibc's inet_ntop writes the
    # same RFC 5952 text as ipaddress except for embedded IPv4 ("." in it), left to ipaddress
    # with the unspecified address (tests/unit/test_blocker_properties.py compares both)
    try:
        canon = _socket.inet_ntop(_socket.AF_INET6, _socket.inet_pton(_socket.AF_INET6, text))
    except (OSError, ValueError):
        return None
    if "." not in canon and canon != "::":
        return canon
    return _normalise_v6(text)


def _normalise_v6(text: str) -> str | None:
    """ipaddress's reading of an IPv6 text (v4-mapped -> IPv4), None if invalid."""
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if addr.ipv4_mapped is not None:
        return _normalise(str(addr.ipv4_mapped))
    return None if addr.is_unspecified else str(addr)


@functools.lru_cache(maxsize=4096)
def aggregate_ip(ip: str) -> str:
    """IPv6 addresses -> their /64 network ("2001:db8:1:2::/64"); IPv4 unchanged."""
    if ":" not in ip:
        return ip
    net = int(ipaddress.IPv6Address(ip)) >> 64 << 64
    return f"{ipaddress.IPv6Address(net)}/64"


_MINUTES: dict[tuple[str, str | None], float | None] = {}
_MINUTE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d", re.ASCII)
_HOURS: dict[str, float | None] = {}  # "YYYY-MM-DD HH" -> plain_hour; cleared with _MINUTES
# the UTC offset must be the same this far around an hour for its minutes to be read by
# arithmetic: a backward zone change up to 2 h before or after it could repeat the hour
_AROUND = (-7200, -3600, -1, 3599, 7199, 10799)


def plain_hour(hour: str) -> float | None:
    """The epoch of local "YYYY-MM-DD HH:00" when the hour is valid and plain: every minute m
    of it is exactly that + 60 m, the hour existing once (no DST or other zone change from two
    hours before it to two after, which could skip or repeat it); else None, and the caller
    asks mktime minute by minute. mktime costs ~2 us (glibc checks the zone file each call): a
    day's log has 1,440 minutes but 24 hours. The C scanner reads a plain hour's minutes by this
    too, as ``_minute_epoch`` does."""
    try:
        return _HOURS[hour]
    except KeyError:
        pass
    start = None
    if _MINUTE.fullmatch(hour + ":00") is not None:
        y, mo, d, h = int(hour[0:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13])
        if _is_date(y, mo, d) and h < 24 and y >= 1970:
            try:
                t = time.mktime((y, mo, d, h, 0, 0, 0, 0, -1))
                here = time.localtime(t)
                if (here.tm_hour, here.tm_min) == (h, 0) and all(
                        time.localtime(t + s).tm_gmtoff == here.tm_gmtoff for s in _AROUND):
                    start = t
            except (ValueError, OverflowError):
                pass
    if len(_HOURS) > 20000:  # hostile lines could invent hours: bounded like _MINUTES
        _HOURS.clear()
    _HOURS[hour] = start
    return start


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_date(y: int, mo: int, d: int) -> bool:
    """A real day of the Gregorian calendar (datetime.date's check, e.g. no 2026-02-30)."""
    leap = mo == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return 1 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= _DAYS[mo - 1] + leap


def _minute_epoch(minute: str, zone: str | None) -> float | None:
    """Epoch of "YYYY-MM-DD HH:MM" (local time, or UTC + zone "+HHMM"); None if invalid."""
    key = (minute, zone)
    try:
        return _MINUTES[key]
    except KeyError:
        pass
    value = None if _MINUTE.fullmatch(minute) is None else _convert_minute(minute, zone)
    if len(_MINUTES) > 20000:  # hostile lines could invent minutes: keep the caches bounded
        _MINUTES.clear()
        _LOCAL.clear()
        _HOURS.clear()
    _MINUTES[key] = value
    return value


def _convert_minute(minute: str, zone: str | None) -> float | None:
    try:
        y, mo, d = int(minute[0:4]), int(minute[5:7]), int(minute[8:10])
        h, mi = int(minute[11:13]), int(minute[14:16])
        if not (_is_date(y, mo, d) and h < 24 and mi < 60 and y >= 1970):
            value = None
        elif zone is None:
            start = plain_hour(minute[:13])
            value = time.mktime((y, mo, d, h, mi, 0, 0, 0, -1)) if start is None \
                else start + 60 * mi
        else:
            import datetime  # zoned stamps (+log_timezone) only: not on scan-log's start-up

            offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1)
            utc = datetime.datetime(y, mo, d, h, mi, tzinfo=datetime.UTC)
            value = utc.timestamp() - offset
    except (ValueError, OverflowError):
        value = None
    return value


_SLOW = frozenset("+-[")  # ms, zone or pid after the seconds: the regex path
_LOCAL: dict[str, float | None] = {}  # cache of _minute_epoch(minute, None), bounded below
_ID = re.compile(_EXIM_ID + " ", re.ASCII)


def line_time(line: str) -> tuple[float, int] | None:
    """(epoch seconds, index where the message text starts) of a mainlog line, or None."""
    if line[19:20] == " " and line[16:17] == ":" and line[20:21] not in _SLOW:
        # Debian's default "YYYY-MM-DD HH:MM:SS text": no regex, the minute is cached
        try:
            base = _LOCAL[line[:16]]
        except KeyError:
            base = _LOCAL[line[:16]] = _minute_epoch(line[:16], None)
        sec = line[17:19]
        if base is None or not sec.isdigit() or not sec.isascii() or sec > "60":
            return None
        if line[26:27] == "-":  # maybe an Exim message id
            m = _ID.match(line, 20)
            if m is not None:
                return base + int(sec), m.end()
        return base + int(sec), 20
    return _line_time_slow(line)


def _line_time_slow(line: str) -> tuple[float, int] | None:
    m = _PREFIX.match(line)
    if m is None:
        return None
    sign = m.group(4)
    base = _minute_epoch(m.group(1), None if sign is None else sign + m.group(5) + m.group(6))
    sec = int(m.group(2))
    if base is None or sec > 60:
        return None
    frac = m.group(3)
    when = base + sec + (int(frac) / 10 ** len(frac) if frac else 0.0)
    return when, m.end()


class LineParser:
    """Parses mainlog lines for the enabled rules (built-in and custom)."""

    def __init__(self, specs: Mapping[str, RuleSpec], *, ipv6_aggregate: bool = False) -> None:
        self.enabled = {n for n, s in specs.items() if s.enabled}
        self.custom = [s for s in specs.values() if s.enabled and s.regex is not None]
        self.ipv6_aggregate = ipv6_aggregate
        kws: dict[str, str] = {}
        for rule, words in BUILTIN_KEYWORDS.items():
            wanted = rule in self.enabled or (rule == AUTHENTICATED and "no-rdns" in self.enabled)
            for w in words if wanted else ():
                kws[w] = rule
        for s in self.custom:
            if s.prefilter:
                kws.setdefault(s.prefilter, s.name)
        # keyword -> the rule it hints at (for scan-log's "unmatched" counts)
        self.keyword_rules: dict[str, str] = kws
        # a custom rule without a prefilter must see every line
        self.keywords: tuple[str, ...] | None = (
            None if any(not s.prefilter for s in self.custom) else tuple(kws))

    def parse(self, line: str) -> Match | None:
        """The match of one line (at most one), or None. Never raises on any input."""
        return self.examine(line)[1]

    def examine(self, line: str, prefiltered: bool = False) -> tuple[str | None, Match | None]:
        """(rule hinted by the prefilter, match): a hint without a match is a near miss.

        ``prefiltered``: the caller already knows the line holds a keyword (scan-log).
        """
        rule, ip, when = self.fields(line, prefiltered)
        return rule, (None if ip is None or rule is None else Match(rule, ip, when))

    def fields(self, line: str, prefiltered: bool = False) -> tuple[str | None, str | None, float]:
        """``examine`` without building a Match: (rule or hint, ip or None, when)."""
        kws = self.keywords
        if kws is not None and not prefiltered:
            for k in kws:
                if k in line:
                    break
            else:
                return None, None, 0.0
        parsed = line_time(line)
        if parsed is None:
            return self._hint(line), None, 0.0
        when, start = parsed
        found = self._builtin(line, start)  # (rule, normalised address)
        ip: str | None
        if found is not None:
            rule, ip = found
        else:
            if not self.custom:
                return self._hint(line), None, when
            msg = line[start:]  # a user's "^" must anchor at the message
            for spec in self.custom:
                if spec.prefilter and spec.prefilter not in msg:
                    continue
                m = spec.regex.search(msg) if spec.regex is not None else None
                if m is not None:
                    rule, raw = spec.name, m.group("ip") or ""
                    break
            else:
                return self._hint(line), None, when
            ip = normalise_ip(raw)
            if ip is None:
                ip = normalise_ip(raw.strip("[]")) if raw[:1] == "[" else None
                if ip is None:
                    return rule, None, when
        if self.ipv6_aggregate:
            ip = aggregate_ip(ip)
        return rule, ip, when

    def _hint(self, line: str) -> str | None:
        for k, rule in self.keyword_rules.items():
            if k in line:
                return rule
        return None

    def _builtin(self, line: str, p: int) -> tuple[str, str] | None:
        """(rule, address) if ``line``'s message (from index p) is a built-in rule's.

        The first character of the message picks the candidate forms; ``grammar`` reads them.
        """
        on = self.enabled
        norm = normalise_ip
        ip: str | None
        c = line[p:p + 1]
        if c == "n":
            if "no-rdns" not in on:
                return None
            if line.startswith("no host name found for IP address ", p):
                ip = grammar.no_host_name(line, p, norm)
            elif line.startswith("no IP address found for host ", p):
                ip = grammar.no_ip_for_host(line, p, norm)
            else:
                return None
            return None if ip is None else ("no-rdns", ip)
        if c == "S":
            if line.startswith("SMTP call from ", p):
                rule, ip = "nonmail", grammar.nonmail(line, p, norm) if "nonmail" in on else None
            elif line.startswith("SMTP protocol synchronization error (", p):
                rule = "sync-error"
                ip = grammar.sync_error(line, p, norm) if rule in on else None
            else:
                return None
            return None if ip is None else (rule, ip)
        if c == "H" or (c == " " and line.startswith(" DSH=", p)):
            ip = grammar.relay_denied(line, p, norm) if "relay-denied" in on else None
            return None if ip is None else ("relay-denied", ip)
        if c == "<":
            if "no-rdns" in on and line.startswith("<= ", p):
                ip = grammar.authenticated(line, p, norm)
                return None if ip is None else (AUTHENTICATED, ip)
            return None
        if "auth-failed" in on and line.find(" authenticator failed for ", p, p + 80) >= 0:
            ip = grammar.auth_failed(line, p, norm)
            return None if ip is None else ("auth-failed", ip)
        return None
