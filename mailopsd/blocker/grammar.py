"""Exim's mainlog grammar for the lines the built-in rules read (Exim 4.96 to 4.99).

Built from Exim's own source (``host_and_ident``, ``host_build_sender_fullhost``,
``smtp_get_connection_info``, ``add_host_info_for_log``; spec chapter "Log files"), not from
sample lines. The host field, in the order Exim writes it::

    [ DS]H=[name ][(helo) ][ip][:port][ I=[iface][:port]][ U=ident][ Ci=id]

(``H=`` only where Exim flags it, e.g. "authenticator failed for H=..." from 4.99 on, none
before; ``DS`` with +dnssec; ``:port`` with +incoming_port; ``I=`` with +incoming_interface;
``U=`` whenever an ident lookup answered, under any log_selector; ``Ci=`` with +connection_id,
Exim 4.98+). Which parts the client writes, and what that means here:

- the rDNS name: its own DNS (Exim 4.96 does not check its characters; the resolver escapes
  spaces and parentheses, not brackets): one token, never starting with "(";
- the HELO: letters, digits, ".", "-" and IP literals unless the admin allows junk
  (helo_accept_junk_hosts, helo_allow_chars): then it may hold spaces, ")" and "[1.2.3.4]";
- the ident (any printable text, after the address), MAIL FROM, RCPT, AUTH ids, commands,
  ``input=``, a certificate's ``DN=``, the subject: all after the address, except the rejected
  command of a pipelining error, which comes before ``H=``.

So the address is the bracket that follows at most one name token and one HELO token. Where
client text could shift it (a junk HELO holding ``) [x]``, a command holding ``" H=``), every
reading is tried and the line counts only if they all agree: no match, no ban.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import Any


class _Lazy:
    """A regex compiled on first use: a scan-log run (timed, start-up included) needs few of
    them. After that ``match`` and ``fullmatch`` are the compiled pattern's own methods."""

    match: Callable[..., re.Match[str] | None]
    fullmatch: Callable[..., re.Match[str] | None]

    def __init__(self, source: str, flags: int = 0) -> None:
        self._args = (source, flags)

    def __getattr__(self, name: str) -> Any:
        pattern = re.compile(*self._args)
        self.match, self.fullmatch = pattern.match, pattern.fullmatch
        return getattr(pattern, name)


# The client address as Exim prints it, with the parts that follow it on every host field.
_NAME = r"(?:(?P<name>[^\s(]\S*) )?"
_HELO = r"(?:(?P<helo>\(\S*\)) )?"
_ADDR = r"\[(?P<ip>[^\]\s]+)\](?::\d+)?(?: I=\[[^\]\s]+\](?::\d+)?)?"
HOST = _NAME + _HELO + _ADDR
# What host_and_ident adds after the address: the ident (free text) and the connection id.
_IDENT_CI = r"(?: U=.*?)?(?: Ci=\S+)?"

# Each rule: (the line from the message start, what follows the address on it). The second,
# after ") [x]", is how another reading of a line with a junk HELO would continue.
_AFTER_AUTH = _IDENT_CI + r": 535 "
_AFTER_RELAY = r"(?= U=| Ci=| X=| F=| rejected )"
_AFTER_SYNC_CONN = _IDENT_CI + r" input="
_AFTER_SYNC_CMD = _IDENT_CI + r" next input=\""
_AFTER_NONMAIL = (_IDENT_CI + r" dropped: too many "
                  r"(?:nonmail commands|unrecognized commands|syntax or protocol errors)")
_AFTER_NO_IP = r"(?: \(via inetd\))?\)\s*$"
_AFTER_ARRIVAL = r"(?: TFO\*?)?(?= U=| Ci=| P=)"

# Exim 4.99 writes host_and_ident(TRUE) here, i.e. "H=" before the host (4.96-4.98 do not)
_AUTH_FAILED = _Lazy(r"\S+ authenticator failed for (?:H=)?" + HOST + _AFTER_AUTH, re.ASCII)
_RELAY = _Lazy(r"(?: DS)?H=" + HOST + _AFTER_RELAY, re.ASCII)
_SYNC_CONN = _Lazy(
    r"SMTP protocol synchronization error \(input sent without waiting for greeting\): "
    r"rejected connection from (?: DS)?H=" + HOST + _AFTER_SYNC_CONN, re.ASCII)
_SYNC_CMD_HEAD = _Lazy(
    r"SMTP protocol synchronization error \(next input sent too soon: pipelining was"
    r"(?: not)? advertised\): rejected \"", re.ASCII)
_SYNC_CMD_HOST = _Lazy(r"H=" + HOST + _AFTER_SYNC_CMD, re.ASCII)
_NONMAIL = _Lazy(r"SMTP call from " + HOST + _AFTER_NONMAIL, re.ASCII)
# "no IP address found for host NAME (during SMTP connection[ Ci=id] from HOST[ I=...])": the
# line ends with Exim's ")" right after the host, so no client text follows the address.
_NO_IP = _Lazy(
    r"no IP address found for host \S+ \(during SMTP connection(?: Ci=\S+)? from "
    + HOST + _AFTER_NO_IP, re.ASCII)
# "<= sender[ R=ref][ DS] H=host[ I=...][ TFO*][ U=ident][ Ci=id] P=proto ...". A sender with
# a space or a quote could hold a fake host field: such arrivals are not read (no exemption).
_ARRIVAL = _Lazy(r"<= [^\s\"]+(?: R=\S+)?(?: DS)? H=" + HOST + _AFTER_ARRIVAL
                      + r"(?P<rest> .*)$", re.ASCII)
_FIXED_TAIL = _Lazy(r"(?: Ci=\S+)? P=(?P<proto>\S+)", re.ASCII)
# Exim's received_protocol for an authenticated SMTP client: esmtpa, esmtpsa (utf8 variants)
_AUTHED_PROTO = _Lazy(r"(?:utf8)?esmtps?a", re.ASCII)


def _alt(after: str) -> _Lazy:
    return _Lazy(r"\) " + _ADDR + after, re.ASCII)


_ALT_AUTH, _ALT_RELAY, _ALT_SYNC_CONN, _ALT_SYNC_CMD, _ALT_NONMAIL, _ALT_NO_IP, _ALT_ARRIVAL = (
    _alt(a) for a in (_AFTER_AUTH, _AFTER_RELAY, _AFTER_SYNC_CONN, _AFTER_SYNC_CMD,
                      _AFTER_NONMAIL, _AFTER_NO_IP, _AFTER_ARRIVAL))
_MAX_READINGS = 16  # more candidate readings than this on one line: treated as ambiguous

Normalise = Callable[[str], "str | None"]


def _unshifted(line: str, m: re.Match[str], norm: Normalise, alt: _Lazy,
               always: bool = False) -> str | None:
    """The address of a host-field match, or None if a junk HELO could have shifted it.

    A HELO with spaces (helo_accept_junk_hosts) could end in ``) [x]`` followed by what Exim
    writes after the address; the real address then sits at a later ``) [``. Every later
    ``) [valid address]`` that ``alt`` (the rule's own continuation) accepts is another
    possible reading: all must agree. ``always``: check even when no HELO was read (the
    reading itself may sit inside a junk HELO that did not parse). A "name" holding ")" is
    checked too: it may be a HELO read as a name (Exim 4.99's "H=(helo) [ip]" once was).
    """
    ip = norm(m.group("ip"))
    if ip is None:
        return None
    if m.group("helo") is None and not always and ")" not in (m.group("name") or ""):
        return ip  # no HELO printed: nothing the client wrote precedes the address
    pos = m.end("helo") if m.group("helo") is not None else m.end("ip")
    i = line.find(") [", pos)
    for _ in range(_MAX_READINGS):
        if i < 0:
            return ip
        other = alt.match(line, i)
        if other is not None:
            alt_ip = norm(other.group("ip"))
            if alt_ip is not None and alt_ip != ip:
                return None
        i = line.find(") [", i + 1)
    return None


def auth_failed(line: str, p: int, norm: Normalise) -> str | None:
    """``DRIVER authenticator failed for HOST: 535 ...`` (a 435/454 is the server's fault)."""
    m = _AUTH_FAILED.match(line, p)
    return None if m is None else _unshifted(line, m, norm, _ALT_AUTH)


def relay_denied(line: str, p: int, norm: Normalise) -> str | None:
    """``H=HOST[ X=... CV=... DN="..."] F=<s> rejected RCPT <r>: relay not permitted``."""
    m = _RELAY.match(line, p)
    # string tests, not ".*" regexes: no backtracking on a hostile 8 KiB line
    if (m is None or not line.rstrip().endswith(": relay not permitted")
            or line.find(" rejected RCPT ", m.end()) < 0):
        return None
    return _unshifted(line, m, norm, _ALT_RELAY)


def sync_error(line: str, p: int, norm: Normalise) -> str | None:
    """Both pipelining errors: the early talker, and "next input sent too soon"."""
    m = _SYNC_CONN.match(line, p)
    if m is not None:
        return _unshifted(line, m, norm, _ALT_SYNC_CONN)
    head = _SYNC_CMD_HEAD.match(line, p)
    if head is None:
        return None
    # the rejected command comes before H= and is the client's raw text: it may hold '" H='
    # too, and so may a junk HELO and the input after. Exim's own '" H=' is one of them: each
    # must read as a host field (a junk HELO makes the real one unreadable) and all must agree.
    found: str | None = None
    i = line.find('" H=', head.end() - 1)
    for _ in range(_MAX_READINGS):
        if i < 0:
            return found
        h = _SYNC_CMD_HOST.match(line, i + 2)
        ip = None if h is None else _unshifted(line, h, norm, _ALT_SYNC_CMD, always=True)
        if ip is None or (found is not None and ip != found):
            return None
        found = ip
        i = line.find('" H=', i + 1)
    return None


def nonmail(line: str, p: int, norm: Normalise) -> str | None:
    """``SMTP call from HOST dropped: too many nonmail|unrecognized commands|syntax ...``."""
    m = _NONMAIL.match(line, p)
    return None if m is None else _unshifted(line, m, norm, _ALT_NONMAIL)


def no_ip_for_host(line: str, p: int, norm: Normalise) -> str | None:
    """``no IP address found for host N (during SMTP connection from [X]...)``."""
    m = _NO_IP.match(line, p)
    return None if m is None else _unshifted(line, m, norm, _ALT_NO_IP)


def no_host_name(line: str, p: int, norm: Normalise) -> str | None:
    """``no host name found for IP address X``: all Exim's text, the address last."""
    raw = line[p + 34:].rstrip()
    return None if " " in raw else norm(raw)


def authenticated(line: str, p: int, norm: Normalise) -> str | None:
    """The client of an arrival from an authenticated SMTP client, else None.

    Exim marks authentication in the protocol (``P=esmtpa``/``esmtpsa``) and adds
    ``A=driver:id``. Without an ident, the first `` P=`` after the host field is Exim's; with
    one (free text before ``P=``) the line counts only if it has a single `` P=``.
    """
    m = _ARRIVAL.match(line, p)
    if m is None:
        return None
    rest = m.group("rest")
    if rest.startswith(" U="):
        if rest.count(" P=") != 1:
            return None
        start = rest.find(" P=")
        t = _FIXED_TAIL.match(rest, start)
    else:
        t = _FIXED_TAIL.match(rest)
    if t is None or _AUTHED_PROTO.fullmatch(t.group("proto")) is None:
        return None
    if rest.find(" A=", t.end()) < 0:
        return None
    return _unshifted(line, m, norm, _ALT_ARRIVAL)
