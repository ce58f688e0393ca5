"""Hostile input (issue 3, 8d): random bytes, huge lines, bad and bracketed-but-invalid
addresses. The parser and the policy never raise, never ban an address that is not a valid one
printed where Exim prints the client, never ban an ignored one; scan-log's block scanner
decides exactly like the line-by-line policy on the same garbage."""

from __future__ import annotations

import ipaddress
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import LineParser, normalise_ip
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.rules import rule_specs
from mailopsd.blocker.scan import scan_file
from mailopsd.core.config import parse_config

CFG = parse_config({"blocker": {"ignore_self": False, "ignore": ["192.0.2.0/28"],
                                "rules": {"auth-failed": {"maxretry": 2},
                                          "no-rdns": {"maxretry": 2}}}}).blocker
PARSER = LineParser(rule_specs(CFG))
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TEMPLATES = [
    "no host name found for IP address {ip}",
    "no IP address found for host {junk} (during SMTP connection from [{ip}])",
    "plain_server authenticator failed for ({junk}) [{ip}]: 535 Incorrect authentication data",
    "H=({junk}) [{ip}] F=<{junk}> rejected RCPT <{junk}>: relay not permitted",
    "SMTP call from ({junk}) [{ip}] dropped: too many nonmail commands (last was \"{junk}\")",
    "SMTP protocol synchronization error (input sent without waiting for greeting): rejected "
    "connection from H=[{ip}] input=\"{junk}\"",
    "SMTP protocol synchronization error (x): rejected \"{junk}\" H=({junk}) [{ip}] next "
    "input=\"{junk}\"",
    "1xVyTg-0000db-27 <= {junk} H=({junk}) [{ip}] P=esmtpa A=plain:{junk} S=1",
]
PREFIXES = ["2026-11-24 10:00:00 ", "2026-11-24 10:00:00.123 +0100 [42] ", "", "2026-11-24 ",
            "2026-13-24 10:00:00 ", "2026-11-24 10:00:00 [x] "]
ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["1.2.3", "256.0.0.1", "01.2.3.4", "::g", "fe80::1%eth0", "0.0.0.0", "",
                     "[1.2.3.4]", "1.2.3.4]x", "2001:db8::1::2", "127.0.0.1", "192.0.2.5",
                     "::ffff:192.0.2.9", "2001:db8::/64", "1.2.3.4/8",
                     "\uff11.\uff12.\uff13.\uff14", "1.2.3.4\x00"]),
    st.text(max_size=20),
)
junk = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def client_line(draw: st.DrawFn) -> tuple[str, str]:
    """(line, the text in the client-address slot)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:  # pure garbage, sometimes very long
        return draw(st.one_of(junk, st.text(min_size=5000, max_size=20000))), ""
    ip = draw(ip_text)
    text = draw(st.sampled_from(TEMPLATES)).format(ip=ip, junk=draw(junk))
    return draw(st.sampled_from(PREFIXES)) + text, ip


def log_line() -> st.SearchStrategy[str]:
    return client_line().map(lambda pair: pair[0])


def valid_client(ip: str) -> bool:
    if "/" in ip:
        ip = ip.split("/")[0]
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


@FAST
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    for line in data.decode("utf-8", "replace").split("\n"):
        PARSER.parse(line)
        PARSER.parse("2026-11-24 10:00:00 " + line)


@FAST
@given(st.lists(client_line(), max_size=40))
def test_hostile_lines_never_crash_and_never_ban_what_is_not_a_client(
        pairs: list[tuple[str, str]]) -> None:
    """Junk in HELO, addresses, commands and input may hold addresses too: only what sits in
    the client slot of a well-formed line may ever be banned, and never an ignored one."""
    p = BanPolicy(CFG, IgnoreList(CFG.ignore))
    slots = {normalise_ip(ip) for _, ip in pairs} - {None}
    for line, _ in pairs:
        d = p.feed_line(line)
        if d is not None:
            assert valid_client(d.ip), d
            assert d.ip in slots, d
            assert ipaddress.ip_address(d.ip) not in ipaddress.ip_network("192.0.2.0/28")


@FAST
@given(st.lists(log_line(), max_size=60))
def test_block_scanner_equals_line_by_line(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mainlog"
        path.write_bytes("".join(x.replace("\n", " ") + "\n" for x in lines).encode(
            "utf-8", "surrogateescape"))
        result = scan_file(str(path), CFG, IgnoreList(CFG.ignore))
        live = BanPolicy(CFG, IgnoreList(CFG.ignore))
        with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
            text = f.read()
        decisions = [x for x in map(live.feed_line, text.split("\n")[:-1]) if x is not None]
    assert result.bans == decisions
    assert result.lines == live.lines
    assert {k: v["unmatched"] for k, v in result.rules.items()} == {
        k: live.unmatched[k] for k in result.rules}


def test_a_huge_line_is_cheap_and_harmless() -> None:
    nasty = [
        "2026-11-24 10:00:00 H=(x) [192.0.2.200] " + "rejected RCPT x " * 50_000,
        "2026-11-24 10:00:00 H=(" + ")" * 100_000 + " [198.51.100.1] relay not permitted",
        "2026-11-24 10:00:00 SMTP protocol synchronization error (" + "(" * 100_000,
        "2026-11-24 10:00:00 no host name found for IP address " + "1" * 100_000,
        "2026-11-24 10:00:00 1xVyTg-0000db-27 <= a H=(x) [198.51.100.2] " + " A=x:y" * 30_000,
    ]
    p = BanPolicy(CFG, IgnoreList(()))
    t0 = time.perf_counter()
    for _ in range(3):
        for line in nasty:
            assert p.feed_line(line) is None
    assert time.perf_counter() - t0 < 2.0  # no catastrophic backtracking
