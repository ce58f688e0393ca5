"""Health checks' pure logic: -H parsing, spamd result lines, DNSBL answers, statuses, config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailopsd.core.config.loader import parse_config
from mailopsd.core.errors import ConfigError
from mailopsd.health.dnsbl import classify
from mailopsd.health.dnsrecords import tags
from mailopsd.health.logs import LogCursor, SpamdTally, parse_spamd_result
from mailopsd.health.model import CRIT, OK, UNKNOWN, WARN, Check, exit_code
from mailopsd.health.spool import SpoolReader, parse_header_file

H_FILE = b"""1xaWPt-0005Zn-0U-H
Debian-exim 102 105
<>
1796641077 0
-received_time_usec .151860
-ident Debian-exim
-aclm 0 21
-frozen 1 evil
second
-body_linecount 37
%s-localerror
XX
1
alice@example.test

150P Received: from Debian-exim
"""


def test_header_file_gives_arrival_time_and_frozen_flag() -> None:
    assert parse_header_file(H_FILE % b"-frozen 1796641080\n") == (1796641077.0, True)
    assert parse_header_file(H_FILE % b"") == (1796641077.0, False)


def test_acl_variable_value_that_looks_like_a_frozen_flag_is_skipped() -> None:
    # "-aclm 0 21" is followed by a 21-byte value spanning two lines: not a flag
    assert parse_header_file(H_FILE % b"")[1] is False  # type: ignore[index]


@given(st.binary(max_size=400))
def test_hostile_header_bytes_never_crash(data: bytes) -> None:
    result = parse_header_file(data)
    assert result is None or isinstance(result[0], float)


def test_spool_counts_every_message_and_uses_arrival_not_mtime(tmp_path: Path) -> None:
    inp = tmp_path / "input"
    (inp / "a").mkdir(parents=True)  # split_spool_directory sub-directory
    (inp / "1xaWPt-0005Zn-0U-H").write_bytes(H_FILE % b"-frozen 1796641080\n")
    (inp / "a" / "1xaWPt-0005Za-0U-H").write_bytes(
        (H_FILE % b"").replace(b"1796641077", b"1796641000"))
    (inp / "1xaWPt-0005Zb-0U-H").write_bytes(b"garbage")
    (inp / "1xaWPt-0005Zn-0U-D").write_bytes(b"body")
    os.utime(inp / "1xaWPt-0005Zn-0U-H", (1, 1))  # an ancient mtime changes nothing
    stats = SpoolReader(str(tmp_path)).stats()
    assert (stats.messages, stats.frozen, stats.unreadable) == (3, 1, 1)
    assert stats.oldest_arrival == 1796641000.0
    assert stats.oldest_age(1796641060.0) == 60.0


def test_absent_spool_is_an_empty_queue_not_an_error(tmp_path: Path) -> None:
    stats = SpoolReader(str(tmp_path / "none")).stats()
    assert (stats.messages, stats.present) == (0, False)


SPAMD = ("Dec  7 10:00:00 mx spamd[99]: spamd: result: Y 15 - BAYES_99,URIBL_BLOCKED,"
         "RCVD_IN_ZEN_BLOCKED scantime=0.3,size=1234,user=x,uid=101,required_score=5.0,"
         "rhost=localhost,raddr=127.0.0.1,rport=45678,mid=<a@b>,bayes=0.999,autolearn=no "
         "autolearn_force=no")


def test_spamd_result_line_gives_blocked_rules_and_bayes() -> None:
    r = parse_spamd_result(SPAMD)
    assert r is not None and r.spam and r.score == 15 and r.bayes
    assert r.blocked == ("URIBL_BLOCKED", "RCVD_IN_ZEN_BLOCKED")


def test_spamd_result_without_tests_and_without_bayes() -> None:
    r = parse_spamd_result("spamd[1]: spamd: result: .  0 -  scantime=0.1,size=9,user=u,"
                           "uid=1,required_score=5.0,rhost=h,raddr=1.2.3.4,rport=1,mid=x,"
                           "autolearn=no autolearn_force=no")
    assert r is not None and not r.spam and r.rules == () and not r.bayes


def test_spamd_tally_rates_over_recent_results() -> None:
    t = SpamdTally(window=4)
    t.feed([SPAMD, "unrelated line", SPAMD.replace("URIBL_BLOCKED,RCVD_IN_ZEN_BLOCKED", "X")
            .replace("bayes=0.999,", "")])
    assert t.messages == {"spam": 2, "ham": 0}
    assert t.rule_hits == {"URIBL_BLOCKED": 1, "RCVD_IN_ZEN_BLOCKED": 1}
    assert t.without_bayes == 1
    assert t.blocked_rate() == (0.5, {"URIBL_BLOCKED": 1, "RCVD_IN_ZEN_BLOCKED": 1})


def test_log_cursor_reads_whole_lines_and_follows_rotation(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"one\ntw")
    cur = LogCursor(str(log))
    assert cur.read() == ["one"]
    with log.open("ab") as f:
        f.write(b"o\n")
    assert cur.read() == ["two"]
    log.rename(tmp_path / "log.1")
    log.write_bytes(b"three\n")
    assert cur.read() == ["three"]


@pytest.mark.parametrize(("answers", "verdict"), [
    (None, "clean"), (["127.0.0.2"], "listed"), (["127.0.0.2", "127.0.0.4"], "listed"),
    (["127.255.255.254"], "refused"), (["127.0.0.2", "127.255.255.255"], "refused"),
    (["203.0.113.9"], "odd"), (["not-an-ip"], "odd")])
def test_dnsbl_answer_meaning(answers: list[str] | None, verdict: str) -> None:
    assert classify(answers) == verdict


def test_dkim_tags_drop_whitespace_inside_values() -> None:
    assert tags("v=DKIM1; k=rsa; p=MIIB IjAN\tBgkq")["p"] == "MIIBIjANBgkq"


@pytest.mark.parametrize(("statuses", "code"), [
    ([], 0), ([OK, OK], 0), ([OK, WARN], 1), ([WARN, CRIT, OK], 2), ([UNKNOWN, OK], 3),
    ([UNKNOWN, WARN], 1), ([UNKNOWN, CRIT], 2)])
def test_exit_status_follows_nagios_convention(statuses: list[str], code: int) -> None:
    assert exit_code(Check(f"c{i}", s, "") for i, s in enumerate(statuses)) == code


def test_health_config_defaults_match_the_issue() -> None:
    cfg = parse_config({})
    assert cfg.metrics.listen == "" and cfg.metrics.textfile == ""
    assert cfg.health.interval == 60 and cfg.health.queue_warn == 100
    assert cfg.health.dnsbl_zones == ("zen.spamhaus.org", "bl.spamcop.net",
                                      "b.barracudacentral.org")
    assert cfg.health.cert_warn == 14 * 86400 and cfg.health.tls == ()
    assert cfg.tls_deploy.reload == ("exim4.service", "dovecot.service")


def test_health_config_tables_parse_and_bad_keys_are_named() -> None:
    cfg = parse_config({"metrics": {"listen": "127.0.0.1:9597"},
                        "health": {"tls": [{"url": "imaps://127.0.0.1", "cert": "/x.pem"}]},
                        "tls-deploy": {"reload": []}})
    assert cfg.health.tls[0].url == "imaps://127.0.0.1" and cfg.tls_deploy.reload == ()
    with pytest.raises(ConfigError) as err:
        parse_config({"metrics": {"listen": "9597", "textfile": "rel.prom"},
                      "health": {"addresses": ["nope"], "tls": [{"url": "http://x"}],
                                 "queue_warn": -1},
                      "tls-deploy": {"reload": ["exim4; rm -rf /"]}})
    keys = {p.key for p in err.value.problems}
    assert {"metrics.listen", "metrics.textfile", "health.addresses", "health.tls[0].url",
            "health.tls[0].cert", "health.queue_warn", "tls-deploy.reload"} <= keys


@given(st.text(max_size=300))
def test_hostile_spamd_lines_never_crash_or_invent_results(line: str) -> None:
    result = parse_spamd_result(line)
    assert result is None or "spamd: result: " in line


def test_metrics_endpoint_serves_every_family_on_ipv4_and_ipv6_loopback() -> None:
    import socket
    import urllib.request

    from mailopsd.core.config.schema_health import split_hostport
    from mailopsd.health.metrics import METRICS, MetricsServer, make_registry
    from mailopsd.health.model import Samples

    assert split_hostport("[::1]:9597") == ("::1", 9597)
    samples = Samples()
    samples.set("exim_queue_messages", 3)
    for host, url_host in (("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")):
        if host == "::1" and not socket.has_ipv6:
            continue
        server = MetricsServer(host, 0, make_registry(lambda: samples))
        server.start()
        try:
            with urllib.request.urlopen(f"http://{url_host}:{server.port}/metrics",
                                        timeout=10) as resp:
                text = resp.read().decode()
        finally:
            server.stop()
        assert "exim_queue_messages 3.0" in text
        assert text.count("# TYPE ") == len(METRICS)


def test_config_show_round_trips_health_tls_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailopsd.cli.main import main
    from mailopsd.core.config import load_config
    from mailopsd.core.config.dump import show_data

    path = tmp_path / "mailopsd.toml"
    path.write_text('[[health.tls]]\nurl = "imaps://127.0.0.1:993"\ncert = "/etc/c.pem"\n'
                    '[[health.tls]]\nurl = "smtp://[::1]:25"\ncert = "/etc/d.pem"\n'
                    '[metrics]\nlisten = "127.0.0.1:9597"\n')
    assert main(["--config", str(path), "config", "show", "--non-default"]) == 0
    again = tmp_path / "again" / "mailopsd.toml"
    again.parent.mkdir()
    again.write_text(capsys.readouterr().out)
    assert show_data(load_config(again)) == show_data(load_config(path))
    assert load_config(again).health.tls[1].url == "smtp://[::1]:25"


@pytest.mark.parametrize(("text", "selector"), [
    ("selector: 201809191\n", "201809191"), ("selector 2023a\n", "2023a"),
    ("# comment\nselector:  s1 \n", "s1"), ("plain\n", "plain"), ("selector:\n", ""),
    ("", "")])
def test_selector_file_in_the_seeds_lsearch_format(text: str, selector: str) -> None:
    from mailopsd.health.remote import selector_from_file

    assert selector_from_file(text) == selector
