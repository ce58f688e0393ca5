"""scan-log's hot path in C (blocker/_fastscan.c) against its Python reference
(blocker/fastpath.py + LineParser.fields): the same events on generated hostile lines, and the
same decisions as the live policy line by line."""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mailopsd.blocker import fastpath, scan
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import LineParser, plain_hour
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.rules import rule_specs
from mailopsd.blocker.scan import ScanResult, scan_file
from mailopsd.core.config import parse_config
from tests.support import exim_lines as X
from tests.support.cext import compile_strict, extension_sources
from tests.unit.test_blocker_properties import cases, exim_line, host, junk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gen_mainlog import generate

REPO = Path(__file__).resolve().parents[2]
T0 = time.mktime((2026, 11, 24, 8, 0, 0, 0, 0, -1))
CFG = parse_config({"blocker": {"ignore_self": False}}).blocker
RULES = ("no-rdns", "auth-failed", "relay-denied", "sync-error", "nonmail")
MANY = settings(max_examples=10_200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_the_extension_is_built() -> None:
    """install.sh and the .deb build it; without it scan-log is ~5x slower (not wrong)."""
    assert fastpath._fastscan is not None


def test_the_extension_compiles_without_warnings(tmp_path: Path) -> None:
    compile_strict(tmp_path, extension_sources("mailopsd.blocker._fastscan"), "-D_GNU_SOURCE")


# -- the same events as the Python path ----------------------------------------------------------
def _parser(rnd: random.Random) -> LineParser:
    rules: dict[str, object] = {r: {"enabled": rnd.random() < 0.8} for r in RULES}
    if rnd.random() < 0.2:
        rules["mine"] = {"regex": r"custom (?P<ip>\S+)", "prefilter": rnd.choice(
            ["custom ", "no host", " A="])}
    cfg = parse_config({"blocker": {"ipv6_aggregate": rnd.random() < 0.3,
                                    "rules": rules}}).blocker
    return LineParser(rule_specs(cfg), ipv6_aggregate=cfg.ipv6_aggregate)


DEFAULT = LineParser(rule_specs(CFG))
HOSTILE = [b"\x00", b"\xff", b"\xc3", b"\xe2\x80", b"\xed\xa0\x80", b"\r", b"\t", b"\x0b",
           b"\xc2\xa0", b" ", b")", b"(", b"[", b"]", b":", b"%", b"\"", b" A=", b") [",
           b"::ffff:", b"0.0.0.0", b"::", b"1.2.3.4", b"\n"]


def _mutate(rnd: random.Random, line: bytes) -> bytes:
    """Byte-level damage the generator's text cannot make: invalid UTF-8, NULs, cuts, CRLF."""
    kind = rnd.random()
    if kind < 0.35 or not line:
        return line
    if kind < 0.5:
        return line + b"\r"
    i = rnd.randrange(len(line) + 1)
    if kind < 0.75:
        return line[:i] + rnd.choice(HOSTILE) + line[i:]
    if kind < 0.85:
        return line[:i]
    if kind < 0.95:
        return line[:i] + bytes([rnd.randrange(256)]) + line[i + 1:]
    return line[:i] + b"x" * rnd.randrange(1, 9000) + line[i:]


PREFIXES = sorted(X.PREFIXES, key=len, reverse=True)


def _stamp(rnd: random.Random) -> str:
    if rnd.random() < 0.85:
        hms = (rnd.randrange(24), rnd.randrange(60), rnd.randrange(61))
        return "2026-11-24 {:02d}:{:02d}:{:02d} ".format(*hms)
    sec = rnd.choice([rnd.randrange(60), 60, 61, 99])
    return (f"{rnd.choice(['1969', '1970', '2026', '9999'])}-{rnd.choice([11, 2, 13, 0]):02d}-"
            f"{rnd.choice([24, 29, 30, 0]):02d} {rnd.randrange(25):02d}:{rnd.randrange(61):02d}"
            f":{sec:02d} ")


def _fast_line(rnd: random.Random) -> str:
    """A line of a form the C shortcut reads (no ident), clean or with forged client text."""
    forged = rnd.random() < 0.4
    h = host(rnd, forged)
    h = dataclasses.replace(h, ident=h.ident if rnd.random() < 0.1 else None,
                            ci=h.ci if rnd.random() < 0.2 else None)

    def text() -> str:
        return junk(rnd) if forged and rnd.random() < 0.7 else "x@example.test"

    kind = rnd.randrange(8)
    if kind == 7:
        line = X.sync_pipelining(h, text(), text(), rnd.choice(["", " (12 bytes)", "..."]))
    elif kind == 0:
        driver = rnd.choice(["plain_server", "x" * rnd.randrange(50, 60)])
        line = X.auth_failed(h, set_id=text(), driver=driver, flag=rnd.random() < 0.5)  # 4.99
    elif kind == 1:
        line = X.relay_denied(h, text(), text(), rnd.choice(["", ' X=TLS1.3 CV=no DN="x"']))
    elif kind == 2:
        line = X.sync_early(h, text())
    elif kind == 3:
        line = X.nonmail(h, rnd.choice(["nonmail", "unrecognized", "syntax"]), text())
    elif kind == 4:
        line = X.no_host_name(h)
    elif kind == 5:
        line = X.no_ip_for_host(h, (junk(rnd, spaces=False) or "p") if forged else "x.example")
    else:
        proto = rnd.choice(["esmtpsa", "esmtpa", "utf8esmtpsa", "esmtps", "esmtpsax"])
        line = X.arrival(h, sender=(junk(rnd, spaces=False) or "s") if forged else "a@b.test",
                         proto=proto, auth=rnd.choice([None, f"plain:{text()}"]),
                         msgid=text(), subject=text())
    return _stamp(rnd) + line


def _searches() -> list[str]:
    """The C line searches this machine can run (the portable one, AVX2 where the CPU has it)."""
    names = []
    for name in ("generic", "avx2"):
        try:
            fastpath._fastscan.use_search(name)
            names.append(name)
        except ValueError:
            pass
    fastpath._fastscan.use_search(names[-1])  # the module's own choice: the best there is
    return names


SEARCHES = _searches()


def _compare(body: bytes, parser: LineParser) -> None:
    """The C parser under every search gives the Python path's events for ``body``."""
    keys = list(parser.keywords or ())
    c = fastpath.c_parser(keys, parser)
    if c is None:
        assert not keys  # every rule disabled: nothing to look for
        return
    want = scan.parse_block(body, keys, parser) if body.endswith(b"\n") else None
    for name in SEARCHES:
        was = fastpath._fastscan.use_search(name)
        try:
            got = c(body)  # None without the final newline: scan.blocks always ends in one
        finally:
            fastpath._fastscan.use_search(was)
        assert got == want, (name, body)


def test_both_searches_are_tested_where_the_cpu_has_avx2() -> None:
    with open("/proc/cpuinfo") as f:
        avx2 = " avx2" in f.read() and os.uname().machine == "x86_64"
    want = ["generic", "avx2"] if avx2 else ["generic"]
    assert want == SEARCHES


@MANY
@given(cases)
def test_generated_hostile_blocks_give_the_same_events_in_c_and_python(
        rnd: random.Random) -> None:
    """>= 10,000 generated blocks of clean, forged and byte-damaged lines per run."""
    lines = []
    for _ in range(rnd.randrange(1, 5)):
        if rnd.random() < 0.6:
            line = _fast_line(rnd)
        else:
            line, _, _ = exim_line(rnd, forged=rnd.random() < 0.5)
            if rnd.random() < 0.5:  # Debian's default stamp, the one the C shortcut reads
                line = _stamp(rnd) + line[len(next(p for p in PREFIXES if line.startswith(p))):]
        lines.append(_mutate(rnd, line.encode("utf-8", "surrogateescape")))
    body = b"\n".join(lines) + (b"\n" if rnd.random() < 0.97 else b"")
    _compare(body, DEFAULT if rnd.random() < 0.6 else _parser(rnd))


def _v6_text(rnd: random.Random) -> str:
    """An IPv6 address with runs of zero groups (ties, v4-mapped, ::, ::1 ...), written in one
    of the ways a log could hold it: compressed or not, upper case, leading zeros."""
    words = [rnd.choice((0, 0, 0, 1, 0xFFFF, rnd.randrange(1 << 16))) for _ in range(8)]
    if rnd.random() < 0.2:
        words[:5] = [0] * 5
        words[5] = rnd.choice((0, 0xFFFF))
    full = ":".join(f"{w:04x}" if rnd.random() < 0.3 else f"{w:x}" for w in words)
    import ipaddress

    text = str(ipaddress.IPv6Address(full)) if rnd.random() < 0.5 else full
    return text.upper() if rnd.random() < 0.2 else text


def _v4_text(rnd: random.Random) -> str:
    """A dotted text that may or may not be a strict IPv4 address: 3 to 5 parts, leading zeros,
    values over 255, empty parts, stray characters."""
    parts = [rnd.choice(("0", "00", "01", "1", "9", "10", "99", "255", "256", "999", "",
                         str(rnd.randrange(256)), "1a", "+1", " 1"))
             for _ in range(rnd.choice((3, 4, 4, 4, 4, 5)))]
    return ".".join(parts) + rnd.choice(("", "", "", ".", "x"))


def test_ipv4_addresses_are_read_as_inet_pton_does() -> None:
    rnd = random.Random(791)
    lines = [f"2026-11-24 08:00:01 no host name found for IP address {_v4_text(rnd)}"
             for _ in range(20_000)]
    _compare(("\n".join(lines) + "\n").encode(), DEFAULT)


def test_ipv6_addresses_are_written_as_glibc_and_ipaddress_would() -> None:
    rnd = random.Random(5952)
    lines = [f"2026-11-24 08:00:01 no host name found for IP address {_v6_text(rnd)}"
             for _ in range(20_000)]
    _compare(("\n".join(lines) + "\n").encode(), DEFAULT)


PIPELINING = ("SMTP protocol synchronization error (next input sent too soon: pipelining was "
              "not advertised): rejected \"MAIL FROM:<a@b>\" ")


def test_hand_made_edge_lines_give_the_same_events() -> None:
    stamp = "2026-11-24 08:00:01 "
    lines = [
        "no host name found for IP address 198.51.100.7",
        "no host name found for IP address 198.51.100.7\r",
        "no host name found for IP address ::ffff:198.51.100.7",
        "no host name found for IP address 0.0.0.0", "no host name found for IP address ::",
        "no host name found for IP address 2001:DB8::0:1", "no host name found for IP address "
        "fe80::1%eth0", "no host name found for IP address 1:2:3:4:5:6:1.2.3.4",
        "no host name found for IP address " + "1" * 46,
        "no IP address found for host x (during SMTP connection from [192.0.2.9])",
        "no IP address found for host x (during SMTP connection Ci=7 from n (h) [192.0.2.9]:25 "
        "I=[192.0.2.1]:25 (via inetd))",
        "login authenticator failed for (x) [192.0.2.9]:25: 535 Incorrect",
        "l\u00e9gin authenticator failed for (x) [192.0.2.9]: 535 Incorrect",
        *("x" * n + " authenticator failed for (x) [192.0.2.9]: 535 Incorrect"
          for n in (53, 54, 55, 60)),
        "H=[192.0.2.9] [192.0.2.8] F=<a> rejected RCPT <b>: relay not permitted",
        "H=(a) [192.0.2.9] F=<a) [192.0.2.8]> rejected RCPT <b>: relay not permitted",
        "H=(a) [192.0.2.9] F=<a> rejected RCPT <b>: relay not permitted ",
        "SMTP call from (a b) [192.0.2.9] dropped: too many nonmail commands",
        "SMTP protocol synchronization error (input sent without waiting for greeting): "
        "rejected connection from H=[2001:db8::9]:25 input=\"x\"",
        *(PIPELINING + tail for tail in (
            'H=(x) [192.0.2.9]:25 next input="DATA"', 'H=n [192.0.2.9] next input="x"',
            'H=(x) [192.0.2.9]:25 next input="x) [192.0.2.8] next input="',
            'H=[192.0.2.9] U=x next input="x"', 'H=[192.0.2.9] Ci=7 next input="x"',
            'H=n [192.0.2.9] U=) [192.0.2.8] next input="x"',
            'H=[192.0.2.8]" H=(x) [192.0.2.9] next input="x"')),
        "1xVyPz-0004vj-3B <= a@b H=(c) [192.0.2.9]:1 P=esmtpsa X=T A=plain:x S=1",
        "1xVyPz-0004vj-3B <= a@b H=(c) [192.0.2.9]:1 P=utf8esmtpa S=1",
        "1xVyPz-00000004vj-3Bcd <= a\"b H=(c) [192.0.2.9] P=esmtpa A=x",
        "2026-11-24 08:00:01 no host name found for IP address 198.51.100.8",
    ]
    for line in lines:
        for prefix in (stamp, "2026-11-24 08:00:60 ", "2026-02-30 08:00:01 ",
                       "2026-11-24 08:00:01.123 ", "1969-12-31 23:59:59 "):
            body = (prefix + line + "\n").encode("utf-8", "surrogateescape")
            _compare(body, DEFAULT)
    _compare(b"", DEFAULT)


def test_keys_the_c_search_cannot_take_leave_it_to_python() -> None:
    cfg = parse_config({"blocker": {"rules": {"mine": {
        "regex": r"caf\u00e9 (?P<ip>\S+)", "prefilter": "caf\u00e9"}}}}).blocker
    parser = LineParser(rule_specs(cfg))
    assert fastpath.c_parser(list(parser.keywords or ()), parser) is None  # not ASCII
    assert fastpath.c_parser(["x"], DEFAULT) is None  # one byte: no pair to look for
    assert fastpath.c_parser([f"k{i}" for i in range(17)], DEFAULT) is None


# -- whole scans: the same decisions as the live policy, with and without the extension ---------
@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast") / "mainlog"
    path.write_text("".join(generate(30_000, 11, 6.0, T0)))
    return path


def _same(result: ScanResult, live: BanPolicy, decisions: list[object], lines: int) -> None:
    assert result.bans == decisions
    assert result.lines == live.lines == lines
    assert {k: (v["matches"], v["unmatched"], v["ignored"]) for k, v in result.rules.items()} \
        == {k: (live.matches[k], live.unmatched[k], live.ignored[k]) for k in result.rules}
    assert (result.exempted, result.authenticated) == (live.exempted,
                                                       live.matches["authenticated"])


def _decisions(path: Path) -> tuple[BanPolicy, list[object]]:
    live = BanPolicy(CFG, IgnoreList(()))
    out: list[object] = []
    text = path.read_bytes().decode("utf-8", "replace")
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        d = live.feed_line(line)
        if d is not None:
            out.append(d)
    return live, out


def test_a_generated_log_decides_exactly_like_the_live_policy_with_and_without_c(
        log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = fastpath._fastscan.scan

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fastpath._fastscan, "scan", counted)
    live, decisions = _decisions(log)
    assert len(decisions) > 20
    _same(scan_file(str(log), CFG, IgnoreList(())), live, decisions, 30_000)
    assert calls  # the C path did the work
    gz = tmp_path / "mainlog.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    _same(scan_file(str(gz), CFG, IgnoreList(())), live, decisions, 30_000)
    monkeypatch.setattr(fastpath, "_fastscan", None)
    _same(scan_file(str(log), CFG, IgnoreList(())), live, decisions, 30_000)


def test_long_lines_and_no_newline_at_the_end_decide_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mainlog"
    hit = b"2026-11-24 08:00:01 no host name found for IP address 198.51.100.7"
    long = b"2026-11-24 08:00:01 " + b"no host name found for IP address " * 40_000
    path.write_bytes(b"\n".join([hit] * 5 + [long, hit + b"\xff", long + b"x" * scan.BLOCK]
                                + [hit] * 7))  # no newline at the end; lines over LINE_LIMIT
    with_c = scan_file(str(path), CFG, IgnoreList(()))
    monkeypatch.setattr(fastpath, "_fastscan", None)
    without = scan_file(str(path), CFG, IgnoreList(()))
    assert with_c.bans == without.bans and with_c.rules == without.rules
    assert with_c.lines == without.lines and len(with_c.bans) == 1


@pytest.mark.parametrize("seed", range(4))
def test_batch_feeding_decides_like_count_through_compaction_and_pruning(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting a block at once (scan-log) decides like counting one event at a time (the
    daemon) on a stream that compacts, prunes, exempts logins, ignores, re-bans and goes back
    in time."""
    from mailopsd.blocker import policy as policy_mod
    from mailopsd.blocker.batch import count_events

    monkeypatch.setattr(policy_mod, "COMPACT_AT", 300)
    monkeypatch.setattr(policy_mod, "PRUNE_MIN", 500)
    rnd = random.Random(seed)
    cfg = parse_config({"blocker": {"ignore": ["192.0.2.0/28"], "bantime_factor": 2,
                                    "rules": {r: {"maxretry": rnd.randrange(1, 5)}
                                              for r in RULES}}}).blocker
    events: list[tuple[str, str | None, float]] = []
    t = T0
    for _ in range(20_000):
        t += rnd.choice([0.0, 1.0, 7.0, 300.0, -2.0])
        ip = (f"192.0.2.{rnd.randrange(40)}" if rnd.random() < 0.5
              else f"198.51.{rnd.randrange(8)}.{rnd.randrange(256)}")
        rule = rnd.choice([*RULES, "authenticated", "no-rdns"])
        events.append((rule, None if rnd.random() < 0.02 else ip, t))
    live = BanPolicy(cfg, IgnoreList.from_config(cfg))
    want = [d for r, ip, w in events if ip is not None and (d := live.count(r, ip, w))]
    batched = BanPolicy(cfg, IgnoreList.from_config(cfg))
    got: list[object] = []
    for i in range(0, len(events), 997):
        count_events(batched, events[i:i + 997], got)  # type: ignore[arg-type]
    assert got == want and len(want) > 50
    assert batched.matches == live.matches and batched.ignored == live.ignored
    assert batched.exempted == live.exempted and batched.tracked() == live.tracked()
    assert batched._compact.n > 0 or live._compact.n == 0
    unmatched = {r: sum(1 for e in events if e[1] is None and e[0] == r) for r in RULES}
    assert all(batched.unmatched[r] == unmatched[r] for r in RULES)


def test_an_ignored_address_under_maxretry_1_is_counted_as_ignored_not_a_crash() -> None:
    cfg = parse_config({"blocker": {"ignore": ["192.0.2.0/24"],
                                    "rules": {"auth-failed": {"maxretry": 1}}}}).blocker
    policy = BanPolicy(cfg, IgnoreList.from_config(cfg))
    assert policy.count("auth-failed", "192.0.2.7", T0) is None  # was a KeyError
    assert policy.ignored["auth-failed"] == 1
    assert policy.count("auth-failed", "198.51.100.7", T0) is not None


def test_bad_arguments_and_a_failing_callback_raise_cleanly() -> None:
    scan_c = fastpath._fastscan.scan
    names, base = fastpath._NAMES, fastpath._minute_base
    for block, keys in [(b"x\n", (b"x",)), (b"x\n", (b"a\nb",)), (b"ab", (b"ab",)),
                        (b"x\n", (b"ab",) * 17)]:
        with pytest.raises(ValueError):
            scan_c(block, keys, (0,) * len(keys), (0,) * len(keys), names, base, plain_hour,
                   None)

    def broken(minute: str) -> float:
        raise RuntimeError(minute)

    line = b"2026-11-24 08:00:01 no host name found for IP address 198.51.100.7\n"
    key = (b"no host name found for IP address ",)
    with pytest.raises(RuntimeError, match=r"^2026-11-24 08$"):  # the hour first
        scan_c(line, key, (23,), (1,), names, base, broken, None)
    with pytest.raises(RuntimeError, match=r"^2026-11-24 08:00$"):  # then its minute
        scan_c(line, key, (23,), (1,), names, broken, lambda hour: None, None)
