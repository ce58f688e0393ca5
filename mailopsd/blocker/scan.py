"""``mailopsd scan-log``: run the blocker's rules and policy over a log file, change nothing.

mailopsd's fail2ban-regex. For speed the file is read in large blocks into one buffer, and only
lines holding one of the parser's prefilter keywords are parsed: found and, in their commonest
forms, read by the C extension ``blocker/_fastscan.c`` on the raw bytes, the rest by the grammar
(``LineParser.fields``). Without the extension (or for keys it cannot take) each block is
decoded once and searched with ``str.find``, the forms read by ``blocker/fastpath.py``, which is
the C code's reference. Parsing is split from counting: a block becomes events with no state,
``feed`` counts them into the policy in file order. The decisions are exactly those that
``BanPolicy.feed_line`` would make line by line, as the unit tests check.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mailopsd.blocker.batch import count_events
from mailopsd.blocker.fastpath import Buffer, Event, c_parser, read_block
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.policy import BanDecision, BanPolicy
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.config.schema_blocker import BlockerConfig
from mailopsd.core.errors import MailopsError

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import IO, Any

BLOCK = 1024 * 1024
LINE_LIMIT = 1024 * 1024  # a "line" without newline this long is processed as it is
CARRY = 64 * 1024  # blocks' room for a line's start before a longer one needs LINE_LIMIT


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
    keys = None if kws is None else list(kws)
    t0 = time.perf_counter()
    f = _open(path)
    parse = None if keys is None else block_parser(keys, policy.parser)
    try:
        for body in blocks(f, path):
            _scan_block(body, parse, policy, result)
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


def blocks(f: IO[bytes], path: str) -> Iterator[bytes | memoryview]:
    """The file's bytes in blocks of whole lines, each ending in a newline; raises
    MailopsError if reading fails.

    Read into one reused buffer (no allocation, copy or page fault per block): a block is
    valid only until the next one is asked for. A "line" without newline that fills
    LINE_LIMIT is cut there, the end of the file gets a newline.
    """
    # the carry (shorter than LINE_LIMIT) is a line's start, usually short: room for CARRY
    # first, a buffer with room for LINE_LIMIT only once a longer one comes (bytearray zeroes
    # every page it allocates: the unused megabyte cost scan-log ~0.4 ms)
    buf = bytearray(BLOCK + CARRY)
    view = memoryview(buf)
    have = 0  # the carry: the start of a line continued by the next read, at buf[:have]
    while True:
        if have + BLOCK > len(buf):  # a new buffer: the last block may still be referenced
            bigger = bytearray(BLOCK + LINE_LIMIT)
            bigger[:have] = view[:have]
            buf, view = bigger, memoryview(bigger)
        want, got = BLOCK, 0
        try:
            while got < want:  # as read(want) would: full unless the file ends
                n = f.readinto(view[have + got:have + want])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
        except (OSError, EOFError) as exc:  # e.g. a truncated .gz: report what was read
            raise MailopsError(f"reading {path} failed: {exc}") from None
        if not got:
            break
        total = have + got
        last = buf.rfind(b"\n", 0, total)
        if last < 0 and total < LINE_LIMIT:
            have = total
            continue
        cut = last + 1 if last >= 0 else total
        yield view[:cut]
        have = total - cut
        buf[:have] = bytes(view[cut:total])  # copied: the two may overlap
    if have:
        yield bytes(view[:have]) + b"\n"


def block_parser(keys: list[str], parser: LineParser
                 ) -> Callable[[Buffer], tuple[list[Event], int]]:
    """``parse_block`` for these keys: the C shortcut (``fastpath.c_parser``) where it is
    built and takes them, else (and for a block it declines) the Python one."""
    c = c_parser(keys, parser)
    if c is None:
        return lambda body: parse_block(body, keys, parser)

    def parse(body: Buffer) -> tuple[list[Event], int]:
        got = c(body)
        return parse_block(body, keys, parser) if got is None else got

    return parse


def parse_block(body: Buffer, keys: list[str], parser: LineParser) -> tuple[list[Event], int]:
    """The events of a block of whole lines and its number of lines (no policy: any process)."""
    # one decode per block: a newline byte is never part of a UTF-8 sequence, so each line
    # decodes exactly as it would alone
    text = str(body, "utf-8", "replace")
    # every line holding a keyword (str.find: a fast C search), read by the shortcut where
    # it can; the rest by the grammar
    done, slow = read_block(text, keys, parser)
    fields = parser.fields
    events: list[Event] = []
    for s, hit in sorted(done.items()):
        if hit is not None:
            events.append(hit)
        else:
            rule, ip, when = fields(text[s:slow[s]], True)
            if rule is not None:
                events.append((rule, ip, when))
    return events, text.count("\n")


def _scan_block(body: Buffer, parse: Callable[[Buffer], tuple[list[Event], int]] | None,
                policy: BanPolicy, result: ScanResult) -> None:
    """Feed the candidate lines of a block of whole lines (ending in a newline)."""
    if parse is None:  # a custom rule without prefilter must see every line
        parts = str(body, "utf-8", "replace").split("\n")
        for line in parts[:-1]:
            decision = policy.feed_candidate(line)
            if decision is not None:
                result.bans.append(decision)
        policy.lines += len(parts) - 1
        return
    events, lines = parse(body)
    count_events(policy, events, result.bans)  # matches counted, rejected lines as unmatched
    policy.lines += lines
