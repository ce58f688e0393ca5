"""The grammar-based rules: every optional field log_selector (or an ident answer) can add, in
Exim's order, IPv4 and IPv6, with and without rDNS names, in every built-in rule and in the A=
exemption; lines other projects wrote for their own Exim tests; forged host fields."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED
from tests.support import exim_lines as X
from tests.support.exim_lines import Host

PARSER = LineParser(rule_specs(parse_config({}).blocker))

RULE_FORMS: list[tuple[str, Callable[[Host], str]]] = [
    ("auth-failed", X.auth_failed),
    ("relay-denied", X.relay_denied),
    ("relay-denied", lambda h: X.relay_denied(h, tls=X.TLS)),
    ("sync-error", X.sync_early),
    ("sync-error", X.sync_pipelining),
    ("sync-error", lambda h: X.sync_pipelining(h, tail=" (35 bytes)")),
    ("nonmail", X.nonmail),
    ("nonmail", lambda h: X.nonmail(h, "unrecognized", "FOOBAR 3")),
    ("nonmail", lambda h: X.nonmail(h, "syntax", "AUTH LOGIN")),
    ("no-rdns", X.no_host_name),
    ("no-rdns", X.no_ip_for_host),
    (AUTHENTICATED, X.arrival),
]
IPS = ["192.0.2.25", "2001:db8::25"]
# (name, helo, port, iface, ident, ci, ds): Debian's default, +all, ident answered, 4.98+ Ci=
OPTIONAL = list(itertools.product(
    [None, "mail.example.net"],  # rDNS name
    [None, "client.example", "[192.0.2.99]", "[IPv6:2001:db8::99]"],  # HELO
    [None, 4711],  # +incoming_port
    [None, "192.0.2.1"],  # +incoming_interface
    [None, "alice", "x y [198.51.100.66]: 535 H=[198.51.100.66] P=esmtpa A=p:q"],  # ident
    [None, "1a2b3c"],  # +connection_id
))


def hosts() -> list[Host]:
    out = []
    for ip in IPS:
        for name, helo, port, iface, ident, ci in OPTIONAL:
            if iface and ":" in ip:
                iface = "2001:db8::1"
            out.append(Host(ip, name, helo, port, iface, ident, ci, ds=name is not None))
    return out


@pytest.mark.parametrize(("rule", "form"), RULE_FORMS)
def test_every_rule_reads_every_optional_field_combination(
        rule: str, form: Callable[[Host], str]) -> None:
    misses = []
    for h in hosts():
        if form is X.arrival and h.ident is not None and " P=" in h.ident:
            continue  # a forged P= in the ident: ambiguous by design, tested below
        for prefix in X.PREFIXES:
            line = prefix + form(h)
            m = PARSER.parse(line)
            if m is None or (m.rule, m.ip) != (rule, h.ip):
                misses.append((line, m))
    assert misses == []


@pytest.mark.parametrize(("line", "rule", "ip"), [
    # fail2ban 1.0.2's own test lines for its exim filter (tests/files/logs/exim)
    ("2013-01-04 17:03:46 login authenticator failed for rrcs-24-106-174-74.se.biz.rr.com "
     "([192.168.2.33]) [24.106.174.74]: 535 Incorrect authentication data (set_id=brian)",
     "auth-failed", "24.106.174.74"),
    ("2013-06-12 03:57:58 login authenticator failed for (ylmf-pc) [120.196.140.45]: 535 "
     "Incorrect authentication data: 1 Time(s)", "auth-failed", "120.196.140.45"),
    ("2013-06-10 18:33:32 [10099] H=(yakult.com.tw) [202.132.70.178]:3755 I=[1.2.3.4]:25 "
     "F=menacedsj04@listserv.eurasia.org rejected RCPT dir@ml3.ru: relay not permitted",
     "relay-denied", "202.132.70.178"),
    ("2013-06-02 06:54:20 [13314] SMTP protocol synchronization error (input sent without "
     "waiting for greeting): rejected connection from H=[211.148.195.192]:25936 I=[1.2.3.4]:25 "
     "input=\"GET / HTTP/1.1\\r\\n\\r\\n\"", "sync-error", "211.148.195.192"),
    ("2013-06-02 09:05:48 [18505] SMTP protocol synchronization error (next input sent too "
     "soon: pipelining was not advertised): rejected \"RSET\" H=ba77.mx83.fr "
     "[82.96.160.77]:58302 I=[1.2.3.4]:25 next input=\"QUIT\\r\\n\"", "sync-error",
     "82.96.160.77"),
    ("2013-06-02 09:22:05 [19591] SMTP call from pc012-6201.spo.scu.edu.tw [163.14.21.161]:3767 "
     "I=[1.2.3.4]:25 dropped: too many nonmail commands (last was \"RSET\")", "nonmail",
     "163.14.21.161"),
    ("2013-06-02 09:22:06 SMTP call from [192.0.2.109] dropped: too many syntax or protocol "
     "errors (last command was \"AUTH LOGIN\")", "nonmail", "192.0.2.109"),
    ("2013-08-20 07:48:02 login authenticator failed for static-ip-85-25-92-177.inaddr.ip-pool"
     ".com (USER) [85.25.92.177]: 535 Incorrect authentication data: 1 Time(s)", "auth-failed",
     "85.25.92.177"),
    ("2014-12-02 03:00:23 auth_plain authenticator failed for (rom182) [193.254.202.35]:41556 "
     "I=[10.0.0.1]:25: 535 Incorrect authentication data (set_id=webmaster)", "auth-failed",
     "193.254.202.35"),
    ("2017-04-23 22:45:59 fixed_login authenticator failed for bad.host.example.com "
     "[192.0.2.2]:54412 I=[172.89.0.6]:587: 535 Incorrect authentication data "
     "(set_id=user@example.com)", "auth-failed", "192.0.2.2"),
    ("2017-12-03 08:51:35 no IP address found for host test.example.com (during SMTP "
     "connection from [192.0.2.9])", "no-rdns", "192.0.2.9"),
    # the report: the incoming interface inside "(during SMTP connection from ...)"
    ("2026-11-24 21:55:02 no IP address found for host x.example (during SMTP connection from "
     "[2001:db8::7]:4711 I=[2001:db8::1]:25)", "no-rdns", "2001:db8::7"),
    ("2026-11-24 21:55:02 no IP address found for host x.example (during SMTP connection "
     "Ci=77 from [192.0.2.7]:4711 I=[192.0.2.1]:25)", "no-rdns", "192.0.2.7"),
])
def test_lines_other_projects_wrote_for_exim(line: str, rule: str, ip: str) -> None:
    m = PARSER.parse(line)
    assert m is not None and (m.rule, m.ip) == (rule, ip)


V = "203.0.113.66"  # the victim an attacker wants banned
A = "198.51.100.7"  # the attacker's real address


@pytest.mark.parametrize("line", [
    # a junk HELO (helo_accept_junk_hosts) ending in a fake address and what follows one
    X.relay_denied(Host(A, helo=f"x) [{V}] F=<a> rejected RCPT <b>: relay not permitted (y")),
    X.auth_failed(Host(A, helo=f"x) [{V}]: 535 Incorrect authentication data (z")),
    # Exim 4.99 writes "H=" before the host here: "H=(x)" must not read as an rDNS name
    X.auth_failed(Host(A, helo=f"x) [{V}]: 535 Incorrect authentication data (z"), flag=True),
    X.auth_failed(Host(A, helo=f"x) [{V}]: 535 Incorrect authentication data (z", port=4,
                       iface="192.0.2.1", ci="77"), flag=True),
    X.nonmail(Host(A, helo=f"x) [{V}] dropped: too many nonmail commands (z")),
    X.sync_early(Host(A, helo=f"x) [{V}] input=\"")),
    X.no_ip_for_host(Host(A, helo=f"x) [{V}]")),
    X.no_ip_for_host(Host(A), ptr=f"x (during SMTP connection from [{V}])"),
    # a pipelining error's command is written raw, before H=
    X.sync_pipelining(Host(A, helo="h"), command=f'MAIL FROM:<a>" H=[{V}] next input="'),
    X.sync_pipelining(Host(A, ident=f'x" H=[{V}] next input="')),
    # the same junk HELO on an arrival would exempt the victim
    X.arrival(Host(A, helo=f"x) [{V}] P=esmtpa A=p:q S=1 (y"), proto="esmtp", auth=None),
])
def test_client_text_never_decides_the_address(line: str) -> None:
    m = PARSER.parse("2026-11-24 21:55:02 " + line)
    assert m is None or m.ip == A, m


@pytest.mark.parametrize("line", [
    X.arrival(Host(A, ident="x P=esmtpa A=plain:bob"), proto="esmtp", auth=None),
    X.arrival(Host(A), proto="esmtps", auth=None, tls=' X=TLS1.3 CV=no DN="CN=a A=p:q"'),
    X.arrival(Host(A), proto="esmtp", auth=None, subject="A=plain:alice P=esmtpa"),
    X.arrival(Host(A), sender='"x H=(h) [192.0.2.1] P=esmtpa A=a:b"@x', proto="esmtp",
              auth=None),
])
def test_forged_logins_exempt_no_one(line: str) -> None:
    assert PARSER.parse("2026-11-24 21:55:02 " + line) is None


def test_a_pipelining_error_with_quotes_in_the_command_still_counts() -> None:
    line = X.sync_pipelining(Host(A, helo="h"), command='MAIL FROM:<"a b"@x.test>')
    m = PARSER.parse("2026-11-24 21:55:02 " + line)
    assert m is not None and (m.rule, m.ip) == ("sync-error", A)


def test_an_rdns_name_that_looks_like_an_address_is_not_the_address() -> None:
    for form in (X.auth_failed, X.relay_denied, X.nonmail, X.sync_early):
        m = PARSER.parse("2026-11-24 21:55:02 " + form(Host(A, name=f"[{V}]")))
        assert m is not None and m.ip == A, form


def test_an_ident_holding_a_fake_address_does_not_hide_the_client() -> None:
    """What a real Exim wrote for a hostile ident server (tests/integration): still the client."""
    ident = f"x) [{V}] H=[{V}] U=[{V}]"
    for form in (X.auth_failed, X.relay_denied, X.nonmail, X.sync_early, X.sync_pipelining):
        m = PARSER.parse("2026-11-24 21:55:02 " + form(Host(A, helo="c.example", ident=ident)))
        assert m is not None and m.ip == A, form
    m = PARSER.parse("2026-11-24 21:55:02 " + X.arrival(Host(A, helo="c", ident=ident)))
    assert m is not None and (m.rule, m.ip) == (AUTHENTICATED, A)


def test_hostile_8k_lines_built_against_the_grammar_stay_cheap() -> None:
    """Many second readings, idents that never end, '" H=' everywhere: bounded work, no match
    where the line is ambiguous."""
    import time

    t = "2026-11-24 21:55:02 "
    nasty = [
        t + "SMTP call from (x) [192.0.2.1] U=" + "a U=b Ci=" * 900,
        t + "H=(x) [192.0.2.1] F=<a> " + ") [198.51.100.9] F=<b>" * 400
        + " rejected RCPT <c>: relay not permitted",
        t + 'SMTP protocol synchronization error (next input sent too soon: pipelining was not '
            'advertised): rejected "' + '" H=(x) [192.0.2.1] next input="' * 250,
        t + "x authenticator failed for (h) [192.0.2.1] U=" + ": 53" * 2500,
        t + "no IP address found for host x (during SMTP connection from (" + "a) [1.2.3.4] "
            * 700 + ")",
        t + "1xVyTg-0000db-27 <= a H=(h) [192.0.2.1] U=" + " P=esmtpa A=x:y" * 500 + " S=1",
    ]
    start = time.perf_counter()
    for _ in range(3):
        for line in nasty:
            m = PARSER.parse(line)
            assert m is None or m.ip == "192.0.2.1", (line[:120], m)
    assert time.perf_counter() - start < 3.0


def test_the_documented_custom_rule_reads_the_optional_fields() -> None:
    """docs/blocker-detection.md's example custom rule, as an admin would paste it."""
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "blocker-detection.md").read_text()
    block = re.search(r"```toml\n(\[blocker\.rules\.auth-not-advertised\].*?)```", doc, re.S)
    assert block is not None
    parser = LineParser(rule_specs(parse_config(tomllib.loads(block.group(1))).blocker))
    for host, ip in (("(x) [192.0.2.5]:4321 I=[192.0.2.1]:25 U=bob", "192.0.2.5"),
                     ("[2001:db8::5]", "2001:db8::5")):
        m = parser.parse(f'2026-11-24 21:55:02.123 [77] SMTP protocol error in "AUTH LOGIN" '
                         f"H={host} AUTH command used when not advertised")
        assert m is not None and (m.rule, m.ip) == ("auth-not-advertised", ip)
