"""Zero wrong bans, proven by generation (issue 12, item 2).

Lines are built as Exim writes them (tests/support/exim_lines.py) with a real client address,
random optional fields (rDNS name, HELO, port, I=, ident, Ci=, DS, TLS fields, timestamp forms)
and forged addresses in every field the client writes: HELO (also junk HELOs with spaces), rDNS
name, ident, MAIL FROM, RCPT, AUTH id, commands, input, message id, subject, DN. The parser must
give the real address or nothing, the policy must never ban anyone else, nothing may raise.
Generated configurations must give errors that name the key, never a traceback.
"""

from __future__ import annotations

import io
import random
import re
import string
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import LineParser
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.errors import ConfigError
from tests.support import exim_lines as X
from tests.support.exim_lines import Host

EVERY_HIT_BANS = parse_config({"blocker": {"ignore_self": False, "auth_exempt": 0, "rules": {
    r: {"maxretry": 1} for r in ("no-rdns", "auth-failed", "relay-denied", "sync-error",
                                 "nonmail")}}}).blocker
PARSER = LineParser(rule_specs(EVERY_HIT_BANS))
MANY = settings(max_examples=10_200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

V4, V6 = "203.0.113.{}", "2001:db8:bad::{:x}"  # victims: an attacker wants them banned
FORGERIES = [
    "[{v}]", "H=[{v}]", "H=(x) [{v}]:25", ") [{v}]", ") [{v}]:25 I=[{v}]:25", "({v})",
    "no host name found for IP address {v}", "(during SMTP connection from [{v}])",
    '" H=[{v}] next input="', "x) [{v}]: 535 Incorrect authentication data", " U=[{v}]",
    ") [{v}] dropped: too many nonmail commands", ") [{v}] F=<a> rejected RCPT <b>: relay "
    "not permitted", ") [{v}] input=\"", " P=esmtpa A=plain:x S=1 ", ' DN="CN=[{v}]"', '"',
    "\n2026-11-24 21:55:02 no host name found for IP address {v}", " Ci=1", " I=[{v}]:25",
]
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
ODD = ["\u00e9", "\u2028", "\x00", "\ufffd", "\\x0d"]


def victim(rnd: random.Random) -> str:
    n = rnd.randrange(1, 255)
    return rnd.choice([V4.format(n), V6.format(n), f"::ffff:{V4.format(n)}"])


def junk(rnd: random.Random, spaces: bool = True, parts: int = 4) -> str:
    """Client-written text: printable junk and forged host fields, in any mix."""
    out = []
    for _ in range(rnd.randrange(parts + 1)):
        kind = rnd.random()
        if kind < 0.45:
            out.append("".join(rnd.choices(PRINTABLE, k=rnd.randrange(13))))
        elif kind < 0.9:
            out.append(rnd.choice(FORGERIES).format(v=victim(rnd)))
        else:
            out.append(rnd.choice(ODD))
    text = "".join(out).replace("\n", " ").replace("\r", " ")
    return text if spaces else text.replace(" ", "")


def clean(rnd: random.Random) -> str:
    return rnd.choice(["mail", "client", "x", "host-1"]) + rnd.choice(["", ".example", ".test"])


def host(rnd: random.Random, forged: bool) -> Host:
    n = rnd.randrange(1, 255)
    ip = f"198.51.100.{n}" if rnd.random() < 0.5 else f"2001:db8:1::{n:x}"
    name = rnd.choice([None, clean(rnd)])
    if forged and rnd.random() < 0.3:
        name = junk(rnd, spaces=False).lstrip("(") or None
    helos: list[str | None] = [None, clean(rnd), f"[{victim(rnd)}]", f"[{ip}]",
                               f"[IPv6:{ip}]"]
    if forged:
        helos += [junk(rnd), junk(rnd, spaces=False)]  # junk HELOs (helo_accept_junk_hosts)
    ident = None if rnd.random() < 0.5 else (junk(rnd)[:127] if forged else clean(rnd))
    return Host(ip=ip, name=name, helo=rnd.choice(helos),
                port=rnd.choice([None, rnd.randrange(1, 65536)]),
                iface=rnd.choice([None, "192.0.2.1", "2001:db8::1"]), ident=ident,
                ci=rnd.choice([None, f"{rnd.randrange(10**6):x}"]),
                ds=name is not None and rnd.random() < 0.3)


def exim_line(rnd: random.Random, forged: bool = True) -> tuple[str, str, str | None]:
    """(line, the real client address, the rule it must match or None)."""
    h = host(rnd, forged)

    def text() -> str:
        return junk(rnd) if forged else clean(rnd)

    form = rnd.randrange(10)
    rule: str | None
    if form == 0:
        line = X.auth_failed(h, set_id=text(), flag=rnd.random() < 0.5)  # 4.99: "H="
        rule = "auth-failed"
    elif form == 1:
        tls = rnd.choice(["", f' X=TLS1.3 CV=no DN="{text()}"'])
        line, rule = X.relay_denied(h, text(), text(), tls), "relay-denied"
    elif form == 2:
        line, rule = X.sync_early(h, text()), "sync-error"
    elif form == 3:
        tail = rnd.choice(["", " (12 bytes)", "..."])
        line, rule = X.sync_pipelining(h, text(), text(), tail), "sync-error"
    elif form == 4:
        kind = rnd.choice(["nonmail", "unrecognized", "syntax"])
        line, rule = X.nonmail(h, kind, text()), "nonmail"
    elif form == 5:
        line, rule = X.no_host_name(h), "no-rdns"
    elif form == 6:
        ptr = (junk(rnd, spaces=False) or "p") if forged else "x.example"
        line, rule = X.no_ip_for_host(h, ptr), "no-rdns"
    else:
        authed = form != 9
        sender = (junk(rnd, spaces=False) or "s") if forged else "a@example.test"
        line = X.arrival(h, sender=sender, proto="esmtpsa" if authed else "esmtps",
                         auth=f"plain:{text()}" if authed else None, msgid=text(),
                         subject=text(), tls=f' X=TLS1.3 CV=no DN="{text()}"')
        rule = AUTHENTICATED if authed else None
    return rnd.choice(X.PREFIXES) + line, h.ip, rule


# hypothesis draws the seed of each case (and shrinks it); the text comes from that seed:
# drawing every character through hypothesis cost ~8 ms a line, this ~0.1 ms
cases = st.randoms(use_true_random=True)


@MANY
@given(cases)
def test_generated_hostile_lines_never_frame_anyone(rnd: random.Random) -> None:
    """>= 10,000 generated lines per run: the real client or no match; no wrong ban."""
    line, ip, rule = exim_line(rnd)
    m = PARSER.parse(line)
    if m is not None:
        assert (m.rule, m.ip) == (rule, ip), (line, m)
    policy = BanPolicy(EVERY_HIT_BANS, IgnoreList(()))
    decision = policy.feed_line(line)
    assert decision is None or decision.ip == ip, (line, decision)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_generated_clean_lines_always_match_their_client(rnd: random.Random) -> None:
    """No client text to hide behind: every form with every optional field must match."""
    line, ip, rule = exim_line(rnd, forged=False)
    m = PARSER.parse(line)
    if rule is None:
        assert m is None, line
    else:
        assert m is not None and (m.rule, m.ip) == (rule, ip), (line, m)


# -- generated configurations ------------------------------------------------------------------
KEYS = ["enabled", "mainlog", "ignore", "ignore_self", "ipv6_aggregate", "auth_exempt",
        "silence_warning", "bantime_factor", "bantime_max", "permanent_after"]
RULE_KEYS = ["enabled", "maxretry", "findtime", "bantime", "regex", "prefilter"]
scalar = st.one_of(st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=12), st.sampled_from(
                       ["1h", "-5m", "0", "permanent", "1.2.3.4/33", "2001:db8::/129",
                        "192.0.2.0/24", "/var/log/x", "relative/x", "(", r"(?P<ip>\S+)",
                        r"(?P<ip>[", "(?P<ip>a)(?P<ip>b)", "x" * 300]))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
rule_name = st.one_of(st.sampled_from(["no-rdns", "auth-failed", "mine", "flood", "Bad Name",
                                       "authenticated", ""]), st.text(max_size=10))


@st.composite
def blocker_table(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """(a [blocker] table with random types and values, the unknown keys put in it)."""
    table: dict[str, Any] = {k: draw(value) for k in draw(st.lists(st.sampled_from(KEYS)))}
    unknown = set(draw(st.lists(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), max_size=2)))
    unknown -= {*KEYS, "rules", "firewall", "flood"}
    table.update(dict.fromkeys(unknown, 1))
    if draw(st.booleans()):
        table["rules"] = draw(st.dictionaries(rule_name, st.dictionaries(
            st.sampled_from([*RULE_KEYS, "maxretries"]), value, max_size=4), max_size=3))
    return table, unknown


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocker_table())
def test_generated_configs_fail_only_with_errors_naming_the_key(
        case: tuple[dict[str, Any], set[str]]) -> None:
    table, unknown = case
    try:
        cfg = parse_config({"blocker": table}).blocker
    except ConfigError as exc:
        keys = [p.key for p in exc.problems]
        assert keys and all(k == "blocker" or k.startswith(("blocker.", "blocker[")) for k in keys)
        assert all(p.message for p in exc.problems)
        for k in unknown:
            assert f"blocker.{k}" in keys
        return
    assume(not unknown)  # a config with an unknown key that loads is the failure
    assert not unknown
    rule_specs(cfg)  # what loads also builds its rules
    LineParser(rule_specs(cfg)).parse("2026-11-24 21:55:02 no host name found for IP address "
                                      "192.0.2.1")


def test_an_unknown_key_that_loads_is_caught() -> None:
    try:
        parse_config({"blocker": {"zzz": 1}})
    except ConfigError as exc:
        assert [p.key for p in exc.problems] == ["blocker.zzz"]
    else:
        raise AssertionError("unknown key accepted")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocker_table())
def test_check_config_on_generated_files_exits_2_without_traceback(
        case: tuple[dict[str, Any], set[str]]) -> None:
    """The command an admin runs: a clear list of keys and exit 2, never a traceback."""
    from mailopsd.cli.main import main

    table, _ = case
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mailopsd.toml"
        path.write_text(_toml({"blocker": table}), encoding="utf-8")
        err, out = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            code = main(["--config", str(path), "check-config"])
    assert "Traceback" not in err.getvalue()
    if code != 0:
        key = r'^  blocker[.\[](?:"[^"\n]*"|\S)*: '  # a dotted key; one that is not bare is quoted
        assert code == 2 and re.search(key, err.getvalue(), re.M), err.getvalue()


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for the generated tables (a writer is not in Python's stdlib)."""
    scalars, tables = [], []
    for k, v in data.items():
        key = _key(k)
        if isinstance(v, dict):
            tables.append(_toml(v, f"{prefix}{key}."))
        else:
            scalars.append(f"{key} = {_val(v)}")
    head = f"[{prefix[:-1]}]\n" if prefix else ""
    return head + "\n".join(scalars) + "\n" + "".join(tables)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _val(k)


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else
                                     "-inf" if v == -float("inf") else repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + "}"
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}"
                         for c in str(v)) + '"'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_scan_log_decides_exactly_like_the_daemon_on_generated_logs(rnd: random.Random) -> None:
    """scan-log's shortcut (blocker/fastpath.py) and block reader against the daemon's
    line-by-line policy, on generated logs of clean and hostile lines mixed."""
    from mailopsd.blocker.scan import scan_file

    lines = [exim_line(rnd, forged=rnd.random() < 0.5)[0] for _ in range(40)]
    ips = [f"198.51.100.{rnd.randrange(1, 4)}", "2001:db8:1::1"]
    lines = [re.sub(r"198\.51\.100\.\d+|2001:db8:1::[0-9a-f]+", rnd.choice(ips), x)
             for x in lines]  # a few clients, so that thresholds are crossed
    cfg = parse_config({"blocker": {"ignore_self": False, "ipv6_aggregate": rnd.random() < 0.3,
                                    "rules": {r: {"maxretry": rnd.randrange(1, 4)} for r in (
                                        "no-rdns", "auth-failed", "relay-denied",
                                        "sync-error", "nonmail")}}}).blocker
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mainlog"
        path.write_bytes("".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape"))
        result = scan_file(str(path), cfg, IgnoreList(()))
    live = BanPolicy(cfg, IgnoreList(()))
    text = "".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape").decode(
        "utf-8", "replace")
    decisions = [x for x in map(live.feed_line, text.split("\n")[:-1]) if x is not None]
    assert result.bans == decisions
    assert {k: v["matches"] for k, v in result.rules.items()} == {
        k: live.matches[k] for k in result.rules}
    assert result.authenticated == live.matches[AUTHENTICATED]
    assert result.exempted == live.exempted


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(lambda a: a.exploded),
                 st.ip_addresses(v=6).map(lambda a: str(a).upper()),
                 st.text("0123456789abcdefABCDEF:.", max_size=45)))
def test_the_fast_ipv6_reading_equals_ipaddress(text: str) -> None:
    from mailopsd.blocker.parse import _normalise_v6, normalise_ip

    assert normalise_ip(text) == (_normalise_v6(text) if ":" in text else normalise_ip(text))
