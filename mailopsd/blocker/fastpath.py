"""scan-log's shortcut through the grammar for the commonest line forms.

``read_block`` reads each line when it has Debian's default
timestamp (``YYYY-MM-DD HH:MM:SS``, no zone, ms or pid) and one of the built-in rules' forms
without an ident and without anything that calls for a second reading (a later ``) [``), with
one regex that takes the address straight from the block: no slicing, no decoding, no dispatch.
Everything else -- and every line where the answer would be "no match" -- is left (None), and
scan-log then asks ``LineParser.fields``; where the shortcut answers, it answers exactly as
``fields`` would (the unit and property tests compare both).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from mailopsd.blocker import grammar
from mailopsd.blocker.parse import (
    _LOCAL,
    LineParser,
    _minute_epoch,
    _normalise,
    aggregate_ip,
    plain_hour,
)
from mailopsd.core.config.rule_names import AUTHENTICATED

try:  # the same reading in C (_fastscan.c), on the raw bytes; this module is its reference
    from mailopsd.blocker import _fastscan
except ImportError:  # not built (a source checkout without a compiler): the Python path
    _fastscan = None  # type: ignore[assignment]

_HOST = grammar.HOST
# Debian's default stamp; line_time's fast path accepts exactly these seconds
_TS = r"(?P<min>\d{4}-\d\d-\d\d \d\d:\d\d):(?P<sec>[0-5]\d|60) "
_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{4,}-[0-9A-Za-z]{2,} "


def _form(rule: str, pattern: str) -> tuple[str, str]:
    return rule, _TS + pattern


# keyword -> (rule, the regex of the whole line from its start); the keyword found the line.
# Compiled on first use (_pattern): with the C extension scan-log never needs them. The order
# is _fastscan.c's form numbers (F_NO_HOST = 1 ... F_ARRIVAL = 7): keep the two in step.
FORMS: dict[str, tuple[str, str]] = {
    "no host name found for IP address ": _form(
        "no-rdns", r"no host name found for IP address (?P<ip>\S+)$"),
    "no IP address found for host ": _form(
        "no-rdns", r"no IP address found for host \S+ \(during SMTP connection(?: Ci=\S+)? "
                   r"from " + _HOST + r"(?: \(via inetd\))?\)$"),
    " authenticator failed for ": _form(
        "auth-failed", r"\S+ authenticator failed for (?:H=)?" + _HOST + r": 535 "),
    "relay not permitted": _form("relay-denied", r"H=" + _HOST + r"(?= X=| F=| rejected )"),
    "synchronization error": _form(
        "sync-error", r"SMTP protocol synchronization error \(input sent without waiting for "
                      r"greeting\): rejected connection from H=" + _HOST + r" input="),
    "dropped: too many ": _form(
        "nonmail", r"SMTP call from " + _HOST + r" dropped: too many (?:nonmail commands|"
                   r"unrecognized commands|syntax or protocol errors)"),
    # an arrival "<= sender H=host P=esmtp(s)a ": no ident, no connection id
    " A=": _form(AUTHENTICATED, _ID + r"<= [^\s\"]+ H=" + _HOST + r" P=(?:utf8)?esmtps?a "),
}


def read_block(text: str, keys: list[str], parser: LineParser
               ) -> tuple[dict[int, tuple[str, str, float] | None], dict[int, int]]:
    """Every line of ``text`` holding a keyword: line start -> (rule, address, when) where the
    shortcut read it, else None; and line start -> line end for those left to the grammar.

    The forms are mutually exclusive (each begins with different text of Exim's), so a line
    found by two keywords is read once.
    """
    done: dict[int, tuple[str, str, float] | None] = {}
    slow: dict[int, int] = {}
    find, rfind = text.find, text.rfind
    enabled, aggregate, local = parser.enabled, parser.ipv6_aggregate, _LOCAL
    for k in keys:
        rule, source = FORMS.get(k, ("", ""))
        pattern = _pattern(source) if source else None
        if pattern is not None and (rule in enabled or (rule == AUTHENTICATED
                                                        and "no-rdns" in enabled)):
            match = pattern.match
            helo_check = "helo" in pattern.groupindex
            extra = rule in _NEEDS_EXTRA
        else:
            match = None
        i = find(k)
        while i >= 0:
            s = rfind("\n", 0, i) + 1
            e = find("\n", i)
            i = find(k, e)
            if s in done:
                continue
            m = None if match is None else match(text, s, e)
            hit = None
            # ") [" is the end of a HELO: only the one before the address may be on the line
            # (HELO printed) or none (no HELO); any other could be a junk HELO's, or a HELO
            # read as a name: the grammar decides those
            if m is not None and (not extra or _extra_ok(rule, text, s, e, m, k)) and not (
                    helo_check and text.count(") [", s, e) != (m.end("helo") >= 0)):
                raw, minute, sec = m.group("ip", "min", "sec")
                # normalise_ip without its frame: the forms' \S+ and [^\]\s]+ are never empty
                ip = _normalise(raw) if len(raw) <= 45 else None
                base = local.get(minute, -1.0)
                if base == -1.0:
                    base = local[minute] = _minute_epoch(minute, None)
                if ip is not None and base is not None:
                    hit = (rule, aggregate_ip(ip) if aggregate else ip, base + int(sec))
            done[s] = hit
            if hit is None:
                slow[s] = e
    return done, slow


@functools.cache
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source, re.ASCII)


_NEEDS_EXTRA = frozenset({AUTHENTICATED, "relay-denied", "auth-failed"})


def _extra_ok(rule: str, text: str, s: int, e: int, m: re.Match[str], kw: str) -> bool:
    """The checks a form needs beyond its regex (string tests: no backtracking)."""
    if rule == AUTHENTICATED:
        return text.find(" A=", m.end() - 1, e) >= 0
    if rule == "relay-denied":
        return (text.endswith(": relay not permitted", s, e)
                and text.find(" rejected RCPT ", m.end(), e) >= 0)
    if rule == "auth-failed":
        return text.find(kw, s + 20, s + 100) >= 0
    return True


# Event: (rule, address, when) for a match, (rule, None, 0.0) for a keyword line a rule rejected
Event = tuple[str, "str | None", float]
Buffer = bytes | memoryview  # a block of whole lines (scan.blocks)
BlockParser = Callable[[Buffer], "tuple[list[Event], int] | None"]

# where each built-in keyword's rarest byte pair (in mainlogs) starts: the C search looks for
# the pairs in one pass and compares the keywords only where one occurs
PAIRS = {"no host name found for IP address ": 23, "no IP address found for host ": 3,
         " authenticator failed for ": 15, "relay not permitted": 3, "synchronization error": 4,
         "dropped: too many ": 15, " A=": 1}
# the C side's form numbers: FORMS' order, from 1 (0: no form, the grammar reads the line)
_CODES = {k: n for n, k in enumerate(FORMS, 1)}
_NAMES = (None, *(rule for rule, _ in FORMS.values()))


def c_parser(keys: list[str], parser: LineParser) -> BlockParser | None:
    """``parse_block`` in C for these keys: body -> (events, lines), or None for a body that
    does not end in a newline (the caller's Python path reads it); None if the extension is
    not built or cannot take these keys (more than 16, non-ASCII, shorter than 2)."""
    if _fastscan is None or not 1 <= len(keys) <= 16 or any(
            len(k) < 2 or not k.isascii() or "\n" in k for k in keys):
        return None
    bkeys = tuple(k.encode() for k in keys)
    offsets = tuple(PAIRS.get(k, 0) for k in keys)
    enabled = parser.enabled
    forms = tuple(_CODES[k] if k in FORMS and (FORMS[k][0] in enabled or (
        FORMS[k][0] == AUTHENTICATED and "no-rdns" in enabled)) else 0 for k in keys)
    aggregate = aggregate_ip if parser.ipv6_aggregate else None
    scan, fields = _fastscan.scan, parser.fields

    def parse(body: Buffer) -> tuple[list[Event], int] | None:
        if body[-1:] != b"\n":
            return None
        events, slow, lines = scan(body, bkeys, offsets, forms, _NAMES, _minute_base, plain_hour,
                                    aggregate)
        lost = False
        for i in slow:  # the lines the C shortcut left to the grammar
            _, s, e = events[i]
            rule, ip, when = fields(str(body[s:e], "utf-8", "replace"), True)
            events[i] = (rule, ip, when)
            lost = lost or rule is None
        if lost:
            events = [ev for ev in events if ev[0] is not None]
        return events, lines

    return parse


def _minute_base(minute: str) -> float | None:
    """``_minute_epoch`` of a minute in local time, through read_block's cache."""
    base = _LOCAL.get(minute, -1.0)
    if base == -1.0:
        base = _LOCAL[minute] = _minute_epoch(minute, None)
    return base
