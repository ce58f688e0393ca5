"""scan-log's shortcut through the grammar for the commonest line forms.

``quick(text, s, e, parser)`` reads the line ``text[s:e]`` when it has Debian's default
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
_AUTH = re.compile(r"\S+ authenticator failed for " + _HOST + r": 535 ", re.ASCII)
_RELAY = re.compile(r"H=" + _HOST + r"(?= X=| F=| rejected )", re.ASCII)
_NONMAIL = re.compile(r"SMTP call from " + _HOST + r" dropped: too many (?:nonmail commands|"
                      r"unrecognized commands|syntax or protocol errors)", re.ASCII)
_SYNC = re.compile(r"SMTP protocol synchronization error \(input sent without waiting for "
                   r"greeting\): rejected connection from H=" + _HOST + r" input=", re.ASCII)
# an arrival's id, then "<= sender H=host P=esmtp(s)a ": no ident, no connection id
_ARRIVAL = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{4,}-[0-9A-Za-z]{2,} <= [^\s\"]+ H="
                      + _HOST + r" P=(?:utf8)?esmtps?a ", re.ASCII)
_NO_RDNS = "no host name found for IP address "


def quick(text: str, s: int, e: int, parser: LineParser) -> tuple[str, str, float] | None:
    """(rule, address, when) of the line text[s:e] if it is a plain common form, else None."""
    if e - s < 40 or text[s + 16] != ":" or text[s + 19] != " " or text[s + 20] in "+-[":
        return None
    minute = text[s:s + 16]
    base = _LOCAL.get(minute, -1.0)
    if base == -1.0:
        base = _LOCAL[minute] = _minute_epoch(minute, None)
    sec = text[s + 17:s + 19]
    if base is None or not sec.isdigit() or not sec.isascii() or sec > "60":
        return None
    p = s + 20
    on = parser.enabled
    c = text[p]
    m: re.Match[str] | None
    if c == "n":
        if "no-rdns" not in on or not text.startswith(_NO_RDNS, p):
            return None
        raw = text[p + 34:e]
        if not raw or " " in raw or raw != raw.rstrip():
            return None
        rule, ip = "no-rdns", normalise_ip(raw)
    else:
        if c == "S":
            if text.startswith("SMTP call from ", p):
                rule, m = "nonmail", _NONMAIL.match(text, p, e)
            else:
                rule, m = "sync-error", _SYNC.match(text, p, e)
        elif c == "H":
            rule, m = "relay-denied", _RELAY.match(text, p, e)
            if m is not None and not (text.endswith(": relay not permitted", p, e)
                                      and text.find(" rejected RCPT ", m.end(), e) >= 0):
                return None
        elif text[p + 6:p + 7] == "-":
            if "no-rdns" not in on:
                return None
            rule, m = AUTHENTICATED, _ARRIVAL.match(text, p, e)
            if m is not None and text.find(" A=", m.end() - 1, e) < 0:
                return None
        elif text.find(" authenticator failed for ", p, p + 80) >= 0:
            rule, m = "auth-failed", _AUTH.match(text, p, e)
        else:
            return None
        if m is None or (rule not in on and rule != AUTHENTICATED):
            return None
        # a HELO, and a later ") [": the grammar's second-reading check decides
        if m.group("helo") is not None and text.find(") [", m.end("helo"), e) >= 0:
            return None
        ip = normalise_ip(m.group("ip"))
    if ip is None:
        return None
    if parser.ipv6_aggregate:
        ip = aggregate_ip(ip)
    return rule, ip, base + int(sec)
