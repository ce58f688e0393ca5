"""scan-log's shortcut through the grammar for the commonest line forms.

``quick(text, s, e, keyword, parser)`` reads the line ``text[s:e]`` when it has Debian's default
timestamp (``YYYY-MM-DD HH:MM:SS``, no zone, ms or pid) and one of the built-in rules' forms
without an ident and without anything that calls for a second reading (a later ``) [``), with
one regex that takes the address straight from the block: no slicing, no decoding, no dispatch.
Everything else -- and every line where the answer would be "no match" -- returns None, and
scan-log then asks ``LineParser.fields``; where ``quick`` answers, it answers exactly as
``fields`` would (the unit and property tests compare both).
"""

from __future__ import annotations

import re

from mailopsd.blocker import grammar
from mailopsd.blocker.parse import _LOCAL, LineParser, _minute_epoch, aggregate_ip, normalise_ip
from mailopsd.core.config.rule_names import AUTHENTICATED

_HOST = grammar.HOST
# Debian's default stamp; line_time's fast path accepts exactly these seconds
_TS = r"(?P<min>\d{4}-\d\d-\d\d \d\d:\d\d):(?P<sec>[0-5]\d|60) "
_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{4,}-[0-9A-Za-z]{2,} "


def _form(rule: str, pattern: str) -> tuple[str, re.Pattern[str]]:
    return rule, re.compile(_TS + pattern, re.ASCII)


# keyword -> (rule, the whole line from its start); the keyword found the line
FORMS: dict[str, tuple[str, re.Pattern[str]]] = {
    "no host name found for IP address ": _form(
        "no-rdns", r"no host name found for IP address (?P<ip>\S+)$"),
    "no IP address found for host ": _form(
        "no-rdns", r"no IP address found for host \S+ \(during SMTP connection(?: Ci=\S+)? "
                   r"from " + _HOST + r"(?: \(via inetd\))?\)$"),
    " authenticator failed for ": _form(
        "auth-failed", r"\S+ authenticator failed for " + _HOST + r": 535 "),
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


def quick(text: str, s: int, e: int, kw: str,
          parser: LineParser) -> tuple[str, str, float] | None:
    """(rule, address, when) of the line text[s:e], found by keyword ``kw``, if it is a plain
    common form; else None."""
    form = FORMS.get(kw)
    if form is None:
        return None
    rule, pattern = form
    m = pattern.match(text, s, e)
    if m is None:
        return None
    if rule == AUTHENTICATED:
        if "no-rdns" not in parser.enabled or text.find(" A=", m.end() - 1, e) < 0:
            return None
    elif rule not in parser.enabled:
        return None
    elif rule == "relay-denied":
        if not (text.endswith(": relay not permitted", s, e)
                and text.find(" rejected RCPT ", m.end(), e) >= 0):
            return None
    elif rule == "auth-failed" and text.find(kw, s + 20, s + 100) < 0:
        return None
    if "helo" in pattern.groupindex:
        # a HELO, and a later ") [": the grammar's second-reading check decides
        helo = m.end("helo")
        if helo >= 0 and text.find(") [", helo, e) >= 0:
            return None
    ip = normalise_ip(m.group("ip"))
    if ip is None:
        return None
    minute = m.group("min")
    base = _LOCAL.get(minute, -1.0)
    if base == -1.0:
        base = _LOCAL[minute] = _minute_epoch(minute, None)
    if base is None:
        return None
    if parser.ipv6_aggregate:
        ip = aggregate_ip(ip)
    return rule, ip, base + int(m.group("sec"))
