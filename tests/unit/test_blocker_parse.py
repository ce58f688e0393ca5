"""The Exim line parser: every line form of reference/exim.md (verbatim), every timestamp and
H= form, IPv4/IPv6, and lines built to frame an innocent address."""

from __future__ import annotations

import calendar
import time

import pytest

from mailopsd.blocker.parse import LineParser, Match, line_time, normalise_ip
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED


def parser(blocker: dict[str, object] | None = None) -> LineParser:
    cfg = parse_config({"blocker": blocker or {}}).blocker
    return LineParser(rule_specs(cfg), ipv6_aggregate=cfg.ipv6_aggregate)


def local(ts: str) -> float:
    return time.mktime(time.strptime(ts, "%Y-%m-%d %H:%M:%S"))


# (line verbatim from reference/exim.md, rule, ip)
EXIM_MD = [
    ("2026-11-24 21:54:58 no host name found for IP address 127.0.0.1", "no-rdns"),
    ("2026-11-24 21:55:02 plain_server authenticator failed for (client.example.test) "
     "[127.0.0.1]: 535 Incorrect authentication data (set_id=alice)", "auth-failed"),
    ("2026-11-24 21:54:59 H=(spammer.test) [127.0.0.1] F=<spam@spammer.test> rejected RCPT "
     "<victim@remote.test>: relay not permitted", "relay-denied"),
    ("2026-11-24 21:55:06 SMTP call from (chatty.test) [127.0.0.1] dropped: too many nonmail "
     "commands (last was \"NOOP\")", "nonmail"),
    ("2026-11-24 21:55:14 SMTP call from (weird.test) [127.0.0.1] dropped: too many "
     "unrecognized commands (last was \"FOOBAR 3\")", "nonmail"),
    ("2026-11-24 21:56:27 SMTP protocol synchronization error (input sent without waiting for "
     "greeting): rejected connection from H=[127.0.0.1] input=\"EHLO early.test\\r\\n\"",
     "sync-error"),
    ("2026-11-24 21:56:29 SMTP protocol synchronization error (next input sent too soon: "
     "pipelining was not advertised): rejected \"MAIL FROM:<a@nopipe.test>\" H=(nopipe.test) "
     "[127.0.0.1] next input=\"RCPT TO:<bob@example.test>\\r\\nDATA\\r\\n\"", "sync-error"),
    ("2026-11-24 21:55:04 1xVyTg-0000db-27 <= alice@example.test H=(client.example.test) "
     "[127.0.0.1] P=esmtpa A=plain_server:alice S=370 id=submission.1@client.example.test",
     AUTHENTICATED),
]


@pytest.mark.parametrize(("line", "rule"), EXIM_MD)
def test_every_reference_line_form_matches(line: str, rule: str) -> None:
    assert parser().parse(line) == Match(rule, "127.0.0.1", local(line[:19]))


@pytest.mark.parametrize(("prefix", "offset"), [
    ("2026-11-24 21:54:58", 0.0),
    ("2026-11-24 21:54:58.123", 0.123),
    ("2026-11-24 21:54:58 [4242]", 0.0),
    ("2026-11-24 21:54:58.007 [4242]", 0.007),
])
def test_local_timestamp_forms(prefix: str, offset: float) -> None:
    m = parser().parse(f"{prefix} no host name found for IP address 192.0.2.7")
    assert m is not None and m.ip == "192.0.2.7"
    assert m.when == pytest.approx(local("2026-11-24 21:54:58") + offset)


@pytest.mark.parametrize(("prefix", "utc"), [
    ("2026-11-24 21:54:58 +0000", "2026-11-24 21:54:58"),
    ("2026-11-24 21:54:58 +0130", "2026-11-24 20:24:58"),
    ("2026-11-24 21:54:58.500 -0500 [77]", "2026-11-25 02:54:58.5"),
])
def test_zoned_timestamps_are_absolute(prefix: str, utc: str) -> None:
    m = parser().parse(f"{prefix} no host name found for IP address 192.0.2.7")
    whole, _, frac = utc.partition(".")
    expected = calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + float(
        "0." + (frac or "0"))
    assert m is not None and m.when == pytest.approx(expected)


def test_message_ids_of_exim_4_96_and_4_97_are_skipped() -> None:
    p = parser()
    for mid in ("1xVyTg-0000db-27", "1rAbCd-00000004vj-3Bcd"):
        line = (f"2026-11-24 21:55:04.123 +0000 [9] {mid} <= a@example.test H=(c) "
                "[192.0.2.8]:4711 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no "
                "A=login_server:alice S=370")
        m = p.parse(line)
        assert m is not None and (m.rule, m.ip) == (AUTHENTICATED, "192.0.2.8")


@pytest.mark.parametrize(("host", "ip"), [
    ("H=(helo) [192.0.2.1]", "192.0.2.1"),
    ("H=mail.example.net (helo) [192.0.2.1]:4242", "192.0.2.1"),
    ("H=mail.example.net [192.0.2.1]", "192.0.2.1"),
    ("H=[192.0.2.1]", "192.0.2.1"),
    ("H=([198.51.100.9]) [192.0.2.1]", "192.0.2.1"),  # only the last bracket is the client
    ("H=(helo) [2001:db8::25]:4245", "2001:db8::25"),
    ("H=(helo) [2001:DB8:0:0::25]", "2001:db8::25"),
    ("H=(helo) [::ffff:192.0.2.1]", "192.0.2.1"),  # v4-mapped: the IPv4 table bans it
    ("H=(helo) [192.0.2.1]:25 I=[198.51.100.1]:25", "192.0.2.1"),
    ("H=() [192.0.2.1]", "192.0.2.1"),
])
def test_every_host_field_form(host: str, ip: str) -> None:
    line = (f"2026-11-24 21:54:59 {host} F=<s@x.test> rejected RCPT <v@remote.test>: "
            "relay not permitted")
    m = parser().parse(line)
    assert m is not None and (m.rule, m.ip) == ("relay-denied", ip)


@pytest.mark.parametrize("host", [
    "mail.example.net (helo) [192.0.2.9]:4321 I=[192.0.2.1]:587",
    "(helo) [192.0.2.9]",
    "[192.0.2.9]",
    "mail.example.net [192.0.2.9]",
])
def test_auth_failure_lines_print_the_host_without_h(host: str) -> None:
    m = parser().parse(f"2026-11-24 21:55:02 login_server authenticator failed for {host}: "
                       "535 Incorrect authentication data")
    assert m is not None and (m.rule, m.ip) == ("auth-failed", "192.0.2.9")


def test_no_ip_address_found_for_host_counts_as_no_rdns() -> None:
    m = parser().parse("2026-11-24 21:55:02 no IP address found for host 7.2.0.192.dyn.example "
                       "(during SMTP connection from [192.0.2.7])")
    assert m is not None and (m.rule, m.ip) == ("no-rdns", "192.0.2.7")


@pytest.mark.parametrize("text", [
    "login_server authenticator failed for (h) [192.0.2.9]: 435 Unable to authenticate at "
    "present",  # a server-side problem, not the client's fault
    "H=(h) [192.0.2.9] F=<a@b.test> rejected RCPT <c@example.test>: Unknown user",  # banned
    # Google's MX in fail2ban's "more" mode
    "SMTP connection from (h) [192.0.2.9]:1234 lost D=0.01s",
    "1xVyTg-0000db-27 => bob <bob@example.test> R=local_user T=maildir_home",
    "1xVyTg-0000db-27 => x@remote.test R=dnslookup T=remote_smtp H=mx.remote.test "
    "[192.0.2.9] A=plain C=\"250 OK\"",
    "1xVyTg-0000db-27 <= a@example.test H=(h) [192.0.2.9] P=esmtp S=100 T=\"A=plain:alice\"",
    "no host name found for IP address 192.0.2.9 extra words",
    "SMTP call from (h) [192.0.2.9] dropped: too many connections",
])
def test_lines_that_must_not_match(text: str) -> None:
    assert parser().parse(f"2026-11-24 21:55:02 {text}") is None


@pytest.mark.parametrize("bad", [
    "999.1.1.1", "1.2.3", "01.2.3.4", "::g", "fe80::1%eth0", "0.0.0.0", "::", "1.2.3.4.5",
    "[1.2.3.4]x", "", "192.0.2.1]", "a" * 60,
])
def test_bracketed_but_invalid_addresses_produce_no_match(bad: str) -> None:
    p = parser()
    lines = [f"2026-11-24 21:54:58 no host name found for IP address {bad}",
             f"2026-11-24 21:54:59 H=(h) [{bad}] F=<a@b> rejected RCPT <c@d>: relay not permitted",
             f"2026-11-24 21:55:06 SMTP call from (h) [{bad}] dropped: too many nonmail commands"]
    for line in lines:
        assert p.parse(line) is None, line


def test_forged_host_fields_never_frame_another_address() -> None:
    """The client controls HELO, MAIL FROM, RCPT, commands and input: only the address Exim
    itself printed counts, and an ambiguous line matches nothing."""
    p = parser()
    relay = p.parse('2026-11-24 21:54:59 H=(x) [192.0.2.7] F=<"H=[203.0.113.6]"@x.test> '
                    "rejected RCPT <a@[203.0.113.6]>: relay not permitted")
    assert relay is not None and relay.ip == "192.0.2.7"
    forged_sync = ('2026-11-24 21:56:29 SMTP protocol synchronization error (next input sent '
                   'too soon: pipelining was not advertised): rejected "MAIL FROM:<a@b>" '
                   'H=[203.0.113.6] next input="" H=(x) [192.0.2.7] next input="DATA\\r\\n"')
    assert p.parse(forged_sync) is None
    early = p.parse('2026-11-24 21:56:27 SMTP protocol synchronization error (input sent '
                    'without waiting for greeting): rejected connection from H=[192.0.2.7] '
                    'input="EHLO x H=[203.0.113.6] input=\\r\\n"')
    assert early is not None and early.ip == "192.0.2.7"
    # a space in a HELO (Exim refuses it) cannot shift the address either: no match at all
    assert p.parse("2026-11-24 21:55:06 SMTP call from (x) [203.0.113.6]) [192.0.2.7] "
                   "dropped: too many nonmail commands") is None
    # text after the host field cannot make an arrival "authenticated"
    assert p.parse('2026-11-24 21:55:04 1xVyTg-0000db-27 <= "a H=[203.0.113.6] b"@x H=(h) '
                   "[192.0.2.7] P=esmtpa A=plain_server:alice S=370") is None


def test_disabled_rules_do_not_match() -> None:
    p = parser({"rules": {"no-rdns": {"enabled": False}}})
    assert p.parse(EXIM_MD[0][0]) is None
    assert p.parse(EXIM_MD[-1][0]) is None  # logins only matter to no-rdns
    assert p.parse(EXIM_MD[1][0]) is not None


def test_ipv6_aggregation_reports_the_64() -> None:
    p = parser({"ipv6_aggregate": True})
    m = p.parse("2026-11-24 21:54:58 no host name found for IP address 2001:db8:1:2:a:b:c:d")
    assert m is not None and m.ip == "2001:db8:1:2::/64"
    m4 = p.parse("2026-11-24 21:54:58 no host name found for IP address 192.0.2.7")
    assert m4 is not None and m4.ip == "192.0.2.7"


def test_custom_rules_search_the_message_and_validate_the_address() -> None:
    p = parser({"rules": {
        "dovecot-ish": {"regex": r"^bad login from (?P<ip>\S+)$", "prefilter": "bad login"},
        "anywhere": {"regex": r"spam-trap hit \[(?P<ip>[^\]]+)\]"}}})
    assert p.parse("2026-11-24 21:55:00 bad login from 192.0.2.3") == Match(
        "dovecot-ish", "192.0.2.3", local("2026-11-24 21:55:00"))
    # ^ anchors at the message, after the timestamp and the id
    assert p.parse("2026-11-24 21:55:00 x bad login from 192.0.2.3") is None
    assert p.parse("2026-11-24 21:55:00 bad login from not-an-ip") is None
    m = p.parse("2026-11-24 21:55:00 1xVyTg-0000db-27 spam-trap hit [2001:db8::9]")
    assert m is not None and (m.rule, m.ip) == ("anywhere", "2001:db8::9")
    assert p.keywords is None  # "anywhere" has no prefilter: every line is a candidate


@pytest.mark.parametrize("line", [
    "2026-02-30 10:00:00 no host name found for IP address 192.0.2.7",
    "2026-11-24 25:00:00 no host name found for IP address 192.0.2.7",
    "2026-11-24 10:61:00 no host name found for IP address 192.0.2.7",
    "2026-11-24 10:00:61 no host name found for IP address 192.0.2.7",
    "\uff12\uff10\uff12\uff16-11-24 10:00:00 no host name found for IP address 192.0.2.7",
    "1969-12-31 23:59:59 no host name found for IP address 192.0.2.7",
    "no host name found for IP address 192.0.2.7",
    "2026-11-24 10:00:00no host name found for IP address 192.0.2.7",
])
def test_bad_timestamps_produce_no_match(line: str) -> None:
    assert parser().parse(line) is None


def test_examine_reports_near_misses() -> None:
    p = parser()
    assert p.examine("2026-11-24 21:54:58 no host name found for IP address 999.9.9.9") == (
        "no-rdns", None)
    assert p.examine("2026-11-24 21:54:58 plain traffic") == (None, None)


def test_line_time_and_normalise_ip_directly() -> None:
    assert line_time("2026-11-24 21:54:58 1xVyTg-0000db-27 Completed") == (
        local("2026-11-24 21:54:58"), 37)
    assert normalise_ip("2001:0DB8::0001") == "2001:db8::1"
    assert normalise_ip("192.0.2.1 ") is None
