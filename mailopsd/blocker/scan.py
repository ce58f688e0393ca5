"""``mailopsd scan-log``: run the blocker's rules and policy over a log file, change nothing.

mailopsd's fail2ban-regex. For speed the file is read in large blocks and only lines holding
one of the parser's prefilter keywords are decoded and parsed (found with ``bytes.find``, which
is far faster than a Python loop over every line); the decisions are exactly those that
``BanPolicy.feed_line`` would make line by line, as the unit tests check.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import NO_RDNS_KEY, fast_no_rdns
from mailopsd.blocker.policy import BanDecision, BanPolicy
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.config.schema_blocker import BlockerConfig
from mailopsd.core.errors import MailopsError

BLOCK = 1024 * 1024
LINE_LIMIT = 1024 * 1024  # a "line" without newline this long is processed as it is


@dataclass
class ScanResult:
    """What a scan found: counts per rule and the bans the daemon would have made."""

    path: str
    lines: int = 0
    seconds: float = 0.0
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    bans: list[BanDecision] = field(default_factory=list)
    authenticated: int = 0
    exempted: int = 0

    @property
    def lines_per_second(self) -> float:
        """Throughput of the scan itself."""
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json``."""
        return {
            "file": self.path, "lines": self.lines, "seconds": round(self.seconds, 4),
            "lines_per_second": round(self.lines_per_second),
            "rules": self.rules, "authenticated": self.authenticated,
            "exempted": self.exempted,
            "bans": [{"ip": b.ip, "rule": b.rule, "count": b.count, "duration": b.duration,
                      "first_seen": b.first_seen, "last_seen": b.last_seen,
                      "reason": b.reason} for b in self.bans],
        }


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        if path.endswith(".gz"):
            import gzip

            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as exc:
        raise MailopsError(f"cannot read {path}: {exc.strerror or exc}") from None


def scan_file(path: str, config: BlockerConfig, ignore: IgnoreList) -> ScanResult:
    """Scan a log file (``.gz`` or ``-`` for stdin work too); raises MailopsError if unreadable."""
    policy = BanPolicy(config, ignore)
    result = ScanResult(path)
    kws = policy.parser.keywords
    keys = None if kws is None else [k.encode() for k in kws]
    t0 = time.perf_counter()
    f = _open(path)
    try:
        carry = b""
        while True:
            try:
                data = f.read(BLOCK)
            except (OSError, EOFError) as exc:  # e.g. a truncated .gz: report what was read
                raise MailopsError(f"reading {path} failed: {exc}") from None
            if not data:
                break
            buf = carry + data if carry else data
            last = buf.rfind(b"\n")
            if last < 0 and len(buf) < LINE_LIMIT:
                carry = buf
                continue
            cut = last + 1 if last >= 0 else len(buf)
            body, carry = buf[:cut], buf[cut:]
            _scan_block(body, keys, policy, result)
        if carry:
            _scan_block(carry + b"\n", keys, policy, result)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    result.seconds = time.perf_counter() - t0
    result.lines = policy.lines
    result.authenticated = policy.matches.get(AUTHENTICATED, 0)
    result.exempted = policy.exempted
    for name, spec in policy.specs.items():
        result.rules[name] = {
            "enabled": spec.enabled, "maxretry": spec.maxretry, "findtime": spec.findtime,
            "bantime": spec.bantime, "matches": policy.matches.get(name, 0),
            "ignored": policy.ignored.get(name, 0), "unmatched": policy.unmatched.get(name, 0),
            "bans": sum(1 for b in result.bans if b.rule == name)}
    return result


def _scan_block(body: bytes, keys: list[bytes] | None, policy: BanPolicy,
                result: ScanResult) -> None:
    """Feed the candidate lines of a block of whole lines (ending in a newline)."""
    # split() finds newlines with memchr; count() walks byte by byte (CPython 3.11): split and
    # len() is twice as fast, even with the list it builds
    parts = body.split(b"\n")
    n = len(parts) - 1
    if keys is None:  # a custom rule without prefilter must see every line
        for raw in parts[:n]:
            _feed(policy, raw, result)
        policy.lines += n
        return
    del parts
    # line start -> line end, or the (rule, ip, when) the no-rdns shortcut already found; the
    # shortcut's keyword goes last so that its answers are the ones kept
    cand: dict[int, int | tuple[str, str, float]] = {}
    shortcut = policy.parser.shortcuts
    find, rfind = body.find, body.rfind
    for k in sorted(keys, key=lambda k: k == NO_RDNS_KEY):
        quick = shortcut and k == NO_RDNS_KEY
        i = find(k)
        while i >= 0:
            s = rfind(b"\n", 0, i) + 1
            e = find(b"\n", i)
            cand[s] = (fast_no_rdns(body, s, i, e) or e) if quick else e
            i = find(k, e)
    fields, count, unmatched = policy.parser.fields, policy.count, policy.unmatched
    bans = result.bans
    for s, v in sorted(cand.items()):
        if isinstance(v, tuple):
            decision = count(*v)
        else:
            rule, ip, when = fields(body[s:v].decode("utf-8", "replace"), True)
            if ip is None:
                if rule is not None:
                    unmatched[rule] = unmatched.get(rule, 0) + 1
                continue
            decision = count(rule, ip, when)  # type: ignore[arg-type]
        if decision is not None:
            bans.append(decision)
    policy.lines += n


def _feed(policy: BanPolicy, raw: bytes, result: ScanResult, prefiltered: bool = False) -> None:
    decision = policy.feed_candidate(raw.decode("utf-8", "replace"), prefiltered)
    if decision is not None:
        result.bans.append(decision)
