"""DNSBL and DKIM/SPF/DMARC checks against DNS servers of the tests' own, in a namespace.

rbldnsd serves a test DNSBL zone listing the test address and a zone answering
127.255.255.254 (Spamhaus's "query refused") for everything; dnsmasq is the resolver the
checks use (127.0.0.1:53 inside the namespace): it serves the DKIM/SPF/DMARC TXT records (the
DKIM one split into several strings) and forwards the DNSBL zones to rbldnsd.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_health_exim_spamd import value
from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, write_config
from tests.support.netns import Netns

pytestmark = pytest.mark.integration

LISTED, CLEAN = "192.0.2.7", "198.51.100.9"


def public_b64(key: Path) -> str:
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=30).stdout
    return base64.b64encode(der).decode()


@dataclass
class Dns:
    root: Path
    ns: Netns
    signing_key: Path


@pytest.fixture(scope="module")
def dns() -> Iterator[Dns]:
    with scratch_root() as root, Netns() as ns:
        keys = {}
        for name in ("signing", "other"):
            keys[name] = root / f"{name}.key"
            subprocess.run(["openssl", "genrsa", "-out", str(keys[name]), "2048"], check=True,
                           capture_output=True, timeout=60)
        zones = root / "rbl"
        zones.mkdir()
        (zones / "bl.txt").write_text(f":127.0.0.2:Listed\n{LISTED}\n")
        (zones / "zen.txt").write_text(":127.255.255.254:Query refused\n"
                                       "0.0.0.0-255.255.255.255\n")
        (zones / "clean.txt").write_text(":127.0.0.2:Listed\n203.0.113.1\n")
        zones.chmod(0o755)
        rbl = ns.popen(["rbldnsd", "-n", "-u", "rbldns", "-w", str(zones), "-b",
                        "127.0.0.1/5353", "bl.test:ip4set:bl.txt", "zen.test:ip4set:zen.txt",
                        "clean.test:ip4set:clean.txt"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        good = public_b64(keys["signing"])
        pieces = [good[i:i + 200] for i in range(0, len(good), 200)]
        # dnsmasq takes each comma-separated piece as one string of the record (no quotes:
        # they are kept literally on its command line)
        dkim_good = ",".join(["v=DKIM1; k=rsa; p=", *pieces])
        other = public_b64(keys["other"])
        dkim_bad = f"v=DKIM1; k=rsa; p={other[:200]},{other[200:]}"
        argv = ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
                "--pid-file=", "--user=dnsmasq",
                "--local=/good.test/", "--local=/bad.test/",  # authoritative: NXDOMAIN
                *(f"--server=/{z}/127.0.0.1#5353" for z in ("bl.test", "zen.test",
                                                              "clean.test")),
                f"--txt-record=sel._domainkey.good.test,{dkim_good}",
                f"--txt-record=sel._domainkey.bad.test,{dkim_bad}",
                "--txt-record=good.test,v=spf1 ip4:192.0.2.0/24 a:mail.good.test -all",
                "--host-record=mail.good.test,198.51.100.9",
                "--txt-record=_dmarc.good.test,v=DMARC1; p=reject",
                "--txt-record=bad.test,v=spf1 ip4:203.0.113.0/24 ~all"]
        dnsmasq = ns.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: ns.run(["ss", "-Hlun"], check=False).stdout.count(":53 ") >= 1
                       and ":5353" in ns.run(["ss", "-Hlun"], check=False).stdout, 20,
                       what="dnsmasq and rbldnsd to listen")
            yield Dns(root, ns, keys["signing"])
        finally:
            for proc in (dnsmasq, rbl):
                proc.terminate()
                proc.wait(timeout=10)


def run_health(d: Dns, name: str, *args: str, **health: Any) -> subprocess.CompletedProcess[str]:
    base = {"nameservers": ["127.0.0.1"], "addresses": [LISTED, CLEAN], "dnsbl_zones": [],
            "exim_spool": str(d.root / "none"), "paniclog": str(d.root / "none.log"),
            "spamd_log": "", "tls_defaults": False, "dns_timeout": "5s"}
    base.update(health)
    config = write_config(d.root / name, health=base,
                          jobs={"learn-spam": {"enabled": False}, "sa-update": {"enabled": False}})
    return d.ns.run([MAILOPSD, "--config", str(config), "health", *args], check=False,
                    timeout=120)


def test_dnsbl_listing_is_crit_and_a_refused_query_only_warns(dns: Dns) -> None:
    res = run_health(dns, "mo-bl", "--json", dnsbl_zones=["bl.test", "zen.test", "clean.test"])
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert res.returncode == 2, res.stdout + res.stderr
    assert checks["dnsbl bl.test"]["status"] == "CRIT"
    assert checks["dnsbl bl.test"]["figure"] == f"listed: {LISTED}"
    assert checks["dnsbl zen.test"]["status"] == "WARN"
    assert "refused" in checks["dnsbl zen.test"]["figure"]
    assert checks["dnsbl clean.test"]["status"] == "OK"
    fams = list(text_string_to_metric_families(run_health(
        dns, "mo-bl2", "--prometheus", dnsbl_zones=["bl.test", "zen.test"]).stdout))
    assert value(fams, "dnsbl_listed", zone="bl.test", address=LISTED) == 1
    assert value(fams, "dnsbl_listed", zone="bl.test", address=CLEAN) == 0
    assert value(fams, "dnsbl_query_refused", zone="zen.test") == 1
    assert value(fams, "dnsbl_query_refused", zone="bl.test") == 0
    with pytest.raises(AssertionError):  # refused is never exported as listed
        value(fams, "dnsbl_listed", zone="zen.test")


def test_dkim_spf_dmarc_records_right_and_wrong(dns: Dns) -> None:
    health = {"dkim_domains": ["good.test", "bad.test"], "dkim_selector": "sel",
              "dkim_private_key": str(dns.signing_key)}
    res = run_health(dns, "mo-rec", "--json", **health)
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert res.returncode == 2, res.stdout + res.stderr
    assert checks["dkim good.test"]["status"] == "OK"  # several strings, joined
    assert checks["dkim bad.test"]["status"] == "CRIT"
    assert "another key" in checks["dkim bad.test"]["figure"]
    assert checks["spf good.test"]["status"] == "OK"  # ip4: for one address, a: for the other
    assert checks["spf bad.test"]["status"] == "CRIT"
    assert checks["dmarc good.test"] == {"name": "dmarc good.test", "status": "OK",
                                         "figure": "p=reject", "action": ""}
    assert checks["dmarc bad.test"]["status"] == "WARN"
    fams = list(text_string_to_metric_families(
        run_health(dns, "mo-rec2", "--prometheus", **health).stdout))
    assert value(fams, "dns_dkim_key_matches", domain="good.test") == 1
    assert value(fams, "dns_dkim_key_matches", domain="bad.test") == 0
    assert value(fams, "dns_spf_covers_host", domain="good.test") == 1
    assert value(fams, "dns_spf_covers_host", domain="bad.test") == 0
    assert value(fams, "dns_dmarc_policy", domain="good.test", policy="reject") == 1
    assert value(fams, "dns_dmarc_policy", domain="bad.test", policy="missing") == 1


def test_selector_comes_from_the_seed_selector_file(dns: Dns) -> None:
    selector_file = dns.root / "dkim-selector"
    selector_file.write_text("selector: sel\n")  # the seed's lsearch file
    res = run_health(dns, "mo-sel", "--json", dkim_domains=["good.test"],
                     dkim_selector_file=str(selector_file),
                     dkim_private_key=str(dns.signing_key))
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert checks["dkim good.test"]["status"] == "OK", res.stdout + res.stderr


def test_a_dkim_key_exim_cannot_read_is_crit(dns: Dns) -> None:
    import grp
    import os

    key = dns.root / "exim-dkim.pem"
    key.write_bytes(dns.signing_key.read_bytes())
    key.chmod(0o600)  # root only: Exim (Debian-exim) cannot sign
    res = run_health(dns, "mo-key", "--json", dkim_domains=["good.test"],
                     dkim_selector="sel", dkim_private_key=str(key))
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert checks["dkim_key_file"]["status"] == "CRIT"
    assert checks["dkim good.test"]["status"] == "OK"  # DNS itself is right
    os.chown(key, 0, grp.getgrnam("Debian-exim").gr_gid)
    key.chmod(0o640)  # the seed's chown root:Debian-exim, chmod 640
    res = run_health(dns, "mo-key2", "--json", dkim_domains=["good.test"],
                     dkim_selector="sel", dkim_private_key=str(key))
    assert "dkim_key_file" not in {c["name"] for c in json.loads(res.stdout)}


def test_daemon_logs_own_address_listed_within_seconds(dns: Dns) -> None:
    from tests.support.daemon import MailopsdProcess

    root = dns.root / "mo-daemon"
    config = write_config(
        root, health={"enabled": True, "nameservers": ["127.0.0.1"], "addresses": [LISTED],
                      "dnsbl_zones": ["bl.test", "zen.test"], "exim_spool": str(root / "none"),
                      "paniclog": str(root / "none.log"), "spamd_log": "",
                      "tls_defaults": False, "interval": "1h"},
        jobs={"learn-spam": {"enabled": False}, "sa-update": {"enabled": False}})
    argv = dns.ns.argv([MAILOPSD, "--config", str(config), "run"])
    with MailopsdProcess(config, argv=argv) as daemon:
        started = time.monotonic()
        listed = daemon.wait_event("dnsbl_listed", timeout=20)
        assert time.monotonic() - started < 15
        assert listed["zone"] == "bl.test" and listed["addresses"] == [LISTED]
        assert listed["level"] == "error" and listed["status"] == "CRIT"
        refused = daemon.wait_event("dnsbl_query_refused", timeout=10)
        assert refused["zone"] == "zen.test" and refused["status"] == "WARN"
    assert daemon.proc.returncode == 0
