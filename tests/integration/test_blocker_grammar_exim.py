"""Every built-in rule against a real Exim 4.96, provoked over real SMTP from a namespace, IPv4 and
IPv6, with Debian's default log_selector and with ``+all``, with and without an ident answer (a
hostile one: it holds a forged address). scan-log and the daemon must ban the same addresses for
the same rules, and nobody else.

    client  192.0.2.10-16, 2001:db8::10-16  --- veth ---  server 192.0.2.1, 2001:db8::1
            ident server :113 (when on)                       Exim :25, mailopsd run

One client address per rule, so that each ban shows which rule fired: every connection also
logs "no host name found" (the namespaces have no names), counted by no-rdns with maxretry 3.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, run_cli, write_config
from tests.support.exim import PrivateExim
from tests.support.netns import Netns, veth_pair

pytestmark = pytest.mark.integration

VICTIM = "203.0.113.66"
IDENT = f"x) [{VICTIM}] H=[{VICTIM}] U=[{VICTIM}]"  # what the hostile ident server answers
# client address offset -> the rule that must ban it (None: never banned)
PLAN: dict[int, str | None] = {
    10: "no-rdns", 11: "auth-failed", 12: "relay-denied", 13: "sync-error", 14: "nonmail",
    15: None,  # logs in, then connects three times without rDNS: exempt by A=
    16: "sync-error",  # pipelining error (next input sent too soon)
}
IDENTD = r"""
import socket, sys, threading
srv = socket.create_server(("::", 113), family=socket.AF_INET6, dualstack_ipv6=True)
def answer(c):
    with c:
        c.settimeout(5)
        q = c.recv(512).decode("ascii", "replace").strip()
        c.sendall(f"{q} : USERID : UNIX : {sys.argv[1]}\r\n".encode())
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import base64, json, smtplib, socket, sys, time
server, base = sys.argv[1], json.loads(sys.argv[2])
def src(k): return base.replace("{k}", str(k))
def smtp(k):
    s = smtplib.SMTP(timeout=15, source_address=(src(k), 0))
    s.connect(server, 25)
    return s
def quit(s):
    try:
        s.quit()
    except (smtplib.SMTPException, OSError):
        pass
def raw(k, first, wait_banner=True):
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(fam)
    s.settimeout(15)
    s.bind((src(k), 0))
    s.connect((server, 25))
    if wait_banner:
        s.recv(4096)
    for data in first:
        s.sendall(data)
        time.sleep(0.3)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
for _ in range(3):                                        # 10: no-rdns
    quit(smtp(10))
s = smtp(11); s.ehlo("client.example")                    # 11: auth-failed
print(s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()), flush=True)
quit(s)
s = smtp(12); s.ehlo("relay.example"); s.mail("spam@spammer.test")   # 12: relay-denied
print(s.rcpt("victim@remote.test"), flush=True); quit(s)
raw(13, [b"EHLO early.test\r\n"], wait_banner=False)     # 13: early talker
s = smtp(14); s.ehlo("chatty.example")                    # 14: nonmail
try:
    for _ in range(30):
        s.noop()
except (smtplib.SMTPException, OSError) as exc:
    print("nonmail:", exc, flush=True)
s = smtp(15); s.ehlo("laptop.example"); s.login("alice", "secret")   # 15: a real user
s.sendmail("alice@example.test", ["bob@remote.test"], b"Subject: hi\r\n\r\nhello\r\n"); quit(s)
for _ in range(3):
    quit(smtp(15))
raw(16, [b"EHLO nopipe.example\r\n", b"MAIL FROM:<a@nopipe.test>\r\nRCPT TO:<b@example.test>\r\n"])
"""


@dataclass
class Lab:
    root: Path
    server: Netns
    client: Netns


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with scratch_root() as root, Netns("mogr") as server, Netns("mogr") as client:
        _, ifc = veth_pair(server, client, "192.0.2.1/24", "192.0.2.10/24", "2001:db8::1/64",
                           "2001:db8::10/64")
        for k in (*PLAN, 17, 20):
            if k != 10:
                client.run(["ip", "addr", "add", f"192.0.2.{k}/24", "dev", ifc])
                client.run(["ip", "addr", "add", f"2001:db8::{k}/64", "dev", ifc, "nodad"])
        yield Lab(root, server, client)


def expected(family: int) -> dict[str, str]:
    fmt = "192.0.2.{}" if family == 4 else "2001:db8::{}"
    return {fmt.format(k): rule for k, rule in PLAN.items() if rule is not None}


@pytest.mark.parametrize(("log_selector", "ident"), [
    ("", False),  # Debian's default
    ("", True),  # the default, and a client whose ident server answers
    ("+all", True),
], ids=["debian-default", "default-ident", "all-ident"])
def test_real_exim_lines_ban_the_same_addresses_by_scan_log_and_daemon(
        lab: Lab, log_selector: str, ident: bool) -> None:
    root = lab.root / f"exim-{time.monotonic_ns()}"
    root.mkdir(mode=0o755)
    variant = "pipelining_advertise_hosts = :\nsmtp_accept_max_nonmail = 5\n"
    if ident:
        variant += "rfc1413_hosts = *\nrfc1413_query_timeout = 5s\n"
    identd = (lab.client.popen([sys.executable, "-c", IDENTD, IDENT], stdout=-1)
              if ident else None)
    try:
        if identd is not None:
            assert identd.stdout is not None and identd.stdout.readline().strip() == b"ready"
        with PrivateExim(root, listen=["192.0.2.1", "2001:db8::1"], port=25, netns=lab.server,
                         log_selector=log_selector, variant=variant,
                         pipelining_connect_advertise_hosts="") as exim:
            for server, base in (("192.0.2.1", "192.0.2.{k}"), ("2001:db8::1", "2001:db8::{k}")):
                lab.client.run([sys.executable, "-c", CLIENT, server, json.dumps(base)],
                               timeout=120)
            # Exim writes some lines after answering (a 535, say): wait for all of them
            wait_until(lambda: not _missing(exim.log_text()), 30, 0.2,
                       what="every provoked line in the mainlog")
            log = exim.mainlog.read_text(errors="replace")
            _check_the_log_has_every_form(log, log_selector, ident)
            cfg = write_config(root / "mailopsd", blocker={
                "enabled": True, "mainlog": str(exim.mainlog), "ignore_self": False,
                "flood": {"enabled": False},
                "firewall": {"ports": [25], "check_interval": "200ms"},
                "rules": {"no-rdns": {"maxretry": 3}, "auth-failed": {"maxretry": 1},
                          "relay-denied": {"maxretry": 1}, "sync-error": {"maxretry": 1},
                          "nonmail": {"maxretry": 1}}})
            want = {**expected(4), **expected(6)}
            scanned = run_cli(cfg, "scan-log", "--json", str(exim.mainlog))
            assert scanned.returncode == 0, scanned.stderr
            report = json.loads(scanned.stdout)
            assert {b["ip"]: b["rule"] for b in report["bans"]} == want, log
            assert report["authenticated"] == 2 and report["exempted"] == 6
            assert _daemon_bans(lab, cfg, want) == want
    finally:
        if identd is not None:
            identd.kill()
            identd.wait(timeout=5)


NEEDLES = ((11, "authenticator failed for"), (12, "relay not permitted"),
           (13, "input sent without waiting for greeting"), (14, "dropped: too many"),
           (15, " A=plain_server:alice"), (16, "next input sent too soon"))


def _missing(log: str) -> list[tuple[str, str]]:
    """The (address, form) pairs not in the log yet."""
    lines = log.splitlines()
    out = []
    for ip in ("192.0.2.{}", "2001:db8::{}"):
        if f"no host name found for IP address {ip.format(10)}" not in log:
            out.append((ip.format(10), "no host name found"))
        for k, needle in NEEDLES:
            if not any(needle in x and f"[{ip.format(k)}]" in x for x in lines):
                out.append((ip.format(k), needle))
    return out


def _check_the_log_has_every_form(log: str, log_selector: str, ident: bool) -> None:
    """The lines are the forms under test (else a rule could pass by not being exercised)."""
    for ip in ("192.0.2.{}", "2001:db8::{}"):
        assert f"no host name found for IP address {ip.format(10)}" in log
        for k, needle in NEEDLES:
            lines = [x for x in log.splitlines() if needle in x and f"[{ip.format(k)}]" in x]
            assert lines, (k, needle, log)
            if ident:
                assert all(f" U={IDENT}" in x for x in lines), lines
    if log_selector == "+all":
        assert " I=[192.0.2.1]:25" in log and " I=[2001:db8::1]:25" in log
        # +millisec and +pid on every line
        assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[\d+\] ", x)
                   for x in log.splitlines())


def _daemon_bans(lab: Lab, cfg: Path, want: dict[str, str]) -> dict[str, str]:
    """Run the daemon over the same log (in the server namespace) until it banned the set."""
    d = MailopsdProcess(cfg, argv=lab.server.argv([MAILOPSD, "--config", str(cfg), "run"]))
    try:
        for ip in want:
            d.wait_event("ip_banned", ip=ip, timeout=30)
        time.sleep(1.0)  # time for a wrong ban to show up too
        banned = {e["ip"]: e["rule"] for e in d.events() if e.get("event") == "ip_banned"}
    finally:
        d.stop()
        lab.server.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False)
    return banned


JUNK = r"""
import base64, smtplib, sys
server, src, helo = sys.argv[1], sys.argv[2], sys.argv[3]
def smtp():
    s = smtplib.SMTP(timeout=15, source_address=(src, 0))
    s.connect(server, 25)
    s.ehlo(helo)
    return s
s = smtp(); s.mail("a@spammer.test"); print(s.rcpt("victim@remote.test"), flush=True); s.quit()
s = smtp()
print(s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()), flush=True)
s.quit()
s = smtp()
try:
    for _ in range(30):
        s.noop()
except (smtplib.SMTPException, OSError) as exc:
    print("nonmail:", exc, flush=True)
"""
# HELOs a junk-accepting Exim writes verbatim: each ends like the rest of a real host field
JUNK_HELOS = [
    f"x) [{VICTIM}] F=<a> rejected RCPT <b>: relay not permitted (",
    f"x) [{VICTIM}]: 535 Incorrect authentication data (",
    f"x) [{VICTIM}] dropped: too many nonmail commands (",
    f"x) [{VICTIM}]:25 I=[192.0.2.1]:25 U=y",
]


def test_junk_helos_from_a_real_exim_never_ban_the_address_they_name(lab: Lab) -> None:
    """helo_accept_junk_hosts: the HELO may imitate the rest of a host field; the line is then
    ambiguous and must not ban the address it names (the client's own may or may not be)."""
    root = lab.root / f"exim-junk-{time.monotonic_ns()}"
    root.mkdir(mode=0o755)
    with PrivateExim(root, listen=["192.0.2.1", "2001:db8::1"], port=25, netns=lab.server,
                     log_selector="+all", variant="helo_accept_junk_hosts = *\n"
                     "smtp_accept_max_nonmail = 5\n") as exim:
        for n, helo in enumerate(JUNK_HELOS):
            for server, src in (("192.0.2.1", f"192.0.2.{11 + n}"),
                                ("2001:db8::1", f"2001:db8::{11 + n}")):
                lab.client.run([sys.executable, "-c", JUNK, server, src, helo], timeout=120)
        # Exim wrote the junk as it came (the rejection lines follow the replies: wait)
        wait_until(lambda: exim.log_text().count(f"({JUNK_HELOS[0]}) [") >= 2, 30, 0.2,
                   what="the junk HELO's relay lines")
        cfg = write_config(root / "mailopsd", blocker={
            "enabled": True, "mainlog": str(exim.mainlog), "ignore_self": False,
            "rules": {r: {"maxretry": 1} for r in (
                "no-rdns", "auth-failed", "relay-denied", "sync-error", "nonmail")}})
        scanned = run_cli(cfg, "scan-log", "--json", str(exim.mainlog))
        assert scanned.returncode == 0, scanned.stderr
        report = json.loads(scanned.stdout)
        banned = {b["ip"] for b in report["bans"]}
        assert VICTIM not in banned
        assert banned <= {f"192.0.2.{11 + n}" for n in range(4)} | {
            f"2001:db8::{11 + n}" for n in range(4)}
        # every junk line was either read for its real client or not at all
        matched = sum(r["matches"] for r in report["rules"].values())
        assert matched >= 8  # the no-rdns lines at least (no HELO in them)


def test_no_ip_found_for_host_with_the_incoming_interface(lab: Lab) -> None:
    """The issue's report: "no IP address found for host N (during SMTP connection from
    [X]:port I=[...]:25)" (+all) was not read. Exim writes it when a host list names a host
    that has no address (here relay_from_hosts = ghost.example, checked at RCPT time, so the
    HELO is in the host field too)."""
    root = lab.root / f"exim-noip-{time.monotonic_ns()}"
    root.mkdir(mode=0o755)
    with PrivateExim(root, listen=["192.0.2.1", "2001:db8::1"], port=25, netns=lab.server,
                     log_selector="+all", relay_from_hosts=("ghost.example",)) as exim:
        for server, src in (("192.0.2.1", "192.0.2.17"), ("2001:db8::1", "2001:db8::17")):
            lab.client.run([sys.executable, "-c", RCPT, server, src], timeout=60)
        for ip in ("192.0.2.17", "2001:db8::17"):
            exim.wait_for_log(
                r"no IP address found for host ghost\.example \(during SMTP connection"
                r"(?: Ci=\S+)? from "  # Ci= with +all from Exim 4.98 on
                rf"\(rcpt\.example\) \[{re.escape(ip)}\]:\d+ I=\[[0-9a-f.:]+\]:25\)$",
                timeout=20)
        cfg = write_config(root / "mailopsd", blocker={
            "enabled": True, "mainlog": str(exim.mainlog), "ignore_self": False,
            "rules": {"no-rdns": {"maxretry": 4}, "relay-denied": {"enabled": False}}})
        scanned = run_cli(cfg, "scan-log", "--json", str(exim.mainlog))
        assert scanned.returncode == 0, scanned.stderr
        report = json.loads(scanned.stdout)
        # two connections each: 2 "no host name found" + 2 "no IP address found" lines
        assert {b["ip"]: b["rule"] for b in report["bans"]} == {
            "192.0.2.17": "no-rdns", "2001:db8::17": "no-rdns"}, exim.log_text()
        assert report["rules"]["no-rdns"]["unmatched"] == 0


RCPT = r"""
import smtplib, sys
for _ in range(2):
    s = smtplib.SMTP(timeout=30, source_address=(sys.argv[2], 0))
    s.connect(sys.argv[1], 25)
    s.ehlo("rcpt.example")
    s.mail("a@rcpt.example")
    print(s.rcpt("x@remote.test"), flush=True)
    s.quit()
"""
