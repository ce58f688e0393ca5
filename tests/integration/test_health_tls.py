"""TLS checks and `mailopsd tls-deploy` against a real private Exim (STARTTLS) and Dovecot.

Certificates are made with openssl: one expired (`openssl ca -selfsign` with past dates), one
valid for 5 days, one other. Exim reads its key as Debian-exim, as on a real server.
"""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_health_exim_spamd import value
from tests.support.common import free_port, scratch_root
from tests.support.daemon import run_cli, write_config
from tests.support.dovecot import PrivateDovecot
from tests.support.exim import PrivateExim

pytestmark = pytest.mark.integration

CA_CNF = """[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def self_signed(d: Path, name: str, days: int) -> tuple[Path, Path]:
    """cert, key made by `openssl req -x509`."""
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(cert), "-days", str(days), "-subj", f"/CN={name}.example.test", cwd=d)
    return cert, key


def expired(d: Path, name: str) -> tuple[Path, Path]:
    """cert, key of a certificate that expired in 2020 (`openssl ca -selfsign`)."""
    work = d / f"ca-{name}"
    work.mkdir()
    (work / "ca.cnf").write_text(CA_CNF)
    (work / "index.txt").write_text("")
    (work / "serial").write_text("01\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"../{name}.key",
            "-out", "r.csr", "-subj", f"/CN={name}.example.test", cwd=work)
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", f"../{name}.key",
            "-in", "r.csr", "-out", f"../{name}.crt", "-startdate", "20200101000000Z",
            "-enddate", "20200201000000Z", "-notext", cwd=work)
    return d / f"{name}.crt", d / f"{name}.key"


class TlsExim(PrivateExim):
    """The private Exim with STARTTLS offered (the support config sets it off) and, with
    ``smtps_port``, TLS at connect on a second port (like 465)."""

    smtps_port: int | None = None

    def write_files(self) -> None:
        super().write_files()
        conf = self.root / "exim.conf"
        text = conf.read_text().replace("\ntls_advertise_hosts =\n",
                                        "\ntls_advertise_hosts = *\n", 1)
        if self.smtps_port:
            text = text.replace(f"\ndaemon_smtp_ports = {self.port}\n",
                                f"\ndaemon_smtp_ports = {self.port} : {self.smtps_port}\n"
                                f"tls_on_connect_ports = {self.smtps_port}\n", 1)
        conf.write_text(text)


def exim_readable(key: Path) -> None:
    os.chown(key, 0, grp.getgrnam("Debian-exim").gr_gid)
    key.chmod(0o640)


@dataclass
class Tls:
    root: Path
    certs: Path
    exim: PrivateExim
    dovecot: PrivateDovecot
    imaps: int


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    with scratch_root() as root:
        certs = root / "certs"
        certs.mkdir()
        old_cert, old_key = expired(certs, "old")
        exim_readable(old_key)
        short_cert, short_key = self_signed(certs, "short", 5)
        self_signed(certs, "other", 300)
        variant = f"tls_certificate = {old_cert}\ntls_privatekey = {old_key}\n"
        imaps = free_port()
        dovecot_conf = (f"ssl = yes\nssl_cert = <{short_cert}\nssl_key = <{short_key}\n"
                        "service imap-login {\n  inet_listener imaps {\n"
                        f"    address = 127.0.0.1\n    port = {imaps}\n  }}\n}}\n")
        exim = TlsExim(root, variant=variant)
        exim.smtps_port = free_port()
        with exim, PrivateDovecot(root, extra_conf=dovecot_conf) as dovecot:
            yield Tls(root, certs, exim, dovecot, imaps)


def health_config(t: Tls, name: str, endpoints: list[tuple[str, Path]]) -> Path:
    config = write_config(
        t.root / name, health={"exim_spool": str(t.root / "none"), "dnsbl_zones": [],
                               "spamd_log": "", "paniclog": str(t.root / "none.log")},
        jobs={"learn-spam": {"enabled": False}, "sa-update": {"enabled": False}})
    with config.open("a") as f:
        for url, cert in endpoints:
            f.write(f'\n[[health.tls]]\nurl = "{url}"\ncert = "{cert}"\n')
    return config


def test_expired_served_certificate_is_crit_and_mismatch_or_expiring_is_warn(tls: Tls) -> None:
    smtp = f"smtp://127.0.0.1:{tls.exim.port}"
    imap = f"imap://127.0.0.1:{tls.dovecot.port}"
    smtps = f"smtps://127.0.0.1:{tls.exim.smtps_port}"  # TLS at connect, like port 465
    config = health_config(tls, "mo-tls", [(smtp, tls.certs / "old.crt"),
                                           (smtps, tls.certs / "old.crt"),
                                           (imap, tls.certs / "other.crt")])
    res = run_cli(config, "health", "--json")
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert res.returncode == 2, res.stdout + res.stderr
    for port in (tls.exim.port, tls.exim.smtps_port):
        exim = checks[f"tls exim:{port}"]
        assert exim["status"] == "CRIT" and "expired" in exim["figure"]
    dovecot = checks[f"tls dovecot:{tls.dovecot.port}"]
    assert dovecot["status"] == "WARN" and "different certificate" in dovecot["figure"]

    from prometheus_client.parser import text_string_to_metric_families

    fams = list(text_string_to_metric_families(run_cli(config, "health", "--prometheus").stdout))
    port = str(tls.exim.port)
    assert value(fams, "tls_certificate_expiry_timestamp_seconds", service="exim",
                 port=port) == 1580515200  # 2020-02-01T00:00:00Z
    assert value(fams, "tls_certificate_matches_disk", service="exim", port=port) == 1
    assert value(fams, "tls_certificate_matches_disk", service="dovecot",
                 port=str(tls.dovecot.port)) == 0

    imaps = f"imaps://127.0.0.1:{tls.imaps}"  # TLS at connect
    config = health_config(tls, "mo-tls2", [(imap, tls.certs / "short.crt"),
                                            (imaps, tls.certs / "short.crt")])
    checks = {c["name"]: c for c in json.loads(run_cli(config, "health", "--json").stdout)}
    for port in (tls.dovecot.port, tls.imaps):
        dovecot = checks[f"tls dovecot:{port}"]
        assert dovecot["status"] == "WARN" and "expires in 4d" in dovecot["figure"]


def deploy_config(t: Tls, name: str, reload: list[str], check_urls: list[str]) -> Path:
    dest = t.root / name / "dest"
    return write_config(t.root / name, **{"tls-deploy": {
        "exim_certificate": str(dest / "exim" / "fullchain.pem"),
        "exim_privatekey": str(dest / "exim" / "privkey.pem"),
        "dovecot_certificate": str(dest / "dovecot" / "fullchain.pem"),
        "dovecot_privatekey": str(dest / "dovecot" / "privkey.pem"),
        "reload": reload, "check_urls": check_urls}})


def lineage(t: Tls, name: str, cert: str, key: str) -> Path:
    d = t.root / "letsencrypt" / name
    d.mkdir(parents=True)
    (d / "fullchain.pem").symlink_to(t.certs / cert)  # certbot's live/ holds symlinks
    (d / "privkey.pem").symlink_to(t.certs / key)
    return d


def test_tls_deploy_installs_files_with_exim_readable_key(tls: Tls) -> None:
    # reload = []: nothing reloaded, so the served check is skipped (that port serves nothing)
    config = deploy_config(tls, "deploy-ok", [], ["smtp://127.0.0.1:1"])
    lin = lineage(tls, "ok", "short.crt", "short.key")
    res = run_cli(config, "tls-deploy", env={"RENEWED_LINEAGE": str(lin)})
    assert res.returncode == 0, res.stdout + res.stderr
    dest = tls.root / "deploy-ok" / "dest"
    key = (dest / "exim" / "privkey.pem").lstat()
    assert stat.S_ISREG(key.st_mode) and stat.S_IMODE(key.st_mode) == 0o640
    assert (key.st_uid, key.st_gid) == (0, grp.getgrnam("Debian-exim").gr_gid)
    dkey = (dest / "dovecot" / "privkey.pem").lstat()
    assert (dkey.st_uid, stat.S_IMODE(dkey.st_mode)) == (0, 0o600)
    assert (dest / "exim" / "fullchain.pem").read_bytes() == (tls.certs / "short.crt").read_bytes()
    # Exim itself can read what was written (as Debian-exim, as it does at STARTTLS)
    read = subprocess.run(["setpriv", "--reuid=Debian-exim", "--regid=Debian-exim",
                           "--init-groups", "cat", str(dest / "exim" / "privkey.pem")],
                          capture_output=True, timeout=30, check=False)
    assert read.returncode == 0 and b"PRIVATE KEY" in read.stdout


def test_tls_deploy_refuses_a_key_that_does_not_match_and_keeps_old_files(tls: Tls) -> None:
    config = deploy_config(tls, "deploy-bad", [], [])
    good = lineage(tls, "good", "other.crt", "other.key")
    assert run_cli(config, "tls-deploy", "--lineage", str(good)).returncode == 0
    dest = tls.root / "deploy-bad" / "dest"
    before = {p: p.read_bytes() for p in dest.rglob("*.pem")}
    bad = lineage(tls, "bad", "short.crt", "other.key")
    res = run_cli(config, "tls-deploy", "--lineage", str(bad))
    assert res.returncode == 1 and "does not match" in res.stderr
    assert {p: p.read_bytes() for p in dest.rglob("*.pem")} == before


def test_tls_deploy_fails_when_the_served_certificate_is_not_the_new_one(tls: Tls) -> None:
    # /bin/true as systemctl: the "reload" does nothing, so Exim keeps serving the old one
    config = deploy_config(tls, "deploy-stale", ["exim4.service"],
                           [f"smtp://127.0.0.1:{tls.exim.port}"])
    with config.open("a") as f:
        f.write('\n[binaries]\nsystemctl = "/bin/true"\n')
    text = config.read_text().replace('check_urls = [', 'served_wait = "2s"\ncheck_urls = [')
    config.write_text(text)
    lin = lineage(tls, "stale", "other.crt", "other.key")
    res = run_cli(config, "tls-deploy", "--lineage", str(lin), timeout=120)
    assert res.returncode == 1 and "does not serve the new certificate" in res.stderr


def test_tls_deploy_reloads_exim_which_then_serves_the_new_certificate(tls: Tls) -> None:
    name = "deploy-live"
    dest = tls.root / name / "dest"
    first = deploy_config(tls, name, [], [])
    assert run_cli(first, "tls-deploy", "--lineage",
                   str(lineage(tls, "first", "other.crt", "other.key"))).returncode == 0
    exim_root = tls.root / "exim-live"
    exim_root.mkdir()
    exim_root.chmod(0o755)
    variant = (f"tls_certificate = {dest / 'exim' / 'fullchain.pem'}\n"
               f"tls_privatekey = {dest / 'exim' / 'privkey.pem'}\n")
    with TlsExim(exim_root, variant=variant) as exim:
        # "systemctl reload-or-restart exim4.service" for this private Exim: SIGHUP its pid
        fake = tls.root / name / "systemctl"
        fake.write_text(f"#!/bin/sh\nkill -HUP $(head -n1 {exim_root / 'exim.pid'})\n")
        fake.chmod(0o755)
        config = deploy_config(tls, name, ["exim4.service"], [f"smtp://127.0.0.1:{exim.port}"])
        with config.open("a") as f:
            f.write(f'\n[binaries]\nsystemctl = "{fake}"\n')
        res = run_cli(config, "tls-deploy", "--lineage",
                      str(lineage(tls, "second", "short.crt", "short.key")))
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"smtp://127.0.0.1:{exim.port} serves the new certificate" in res.stdout


def test_health_sees_a_key_exim_cannot_read_and_a_mismatched_pair(tls: Tls) -> None:
    name = "files"
    config = deploy_config(tls, name, [], [])
    assert run_cli(config, "tls-deploy", "--lineage",
                   str(lineage(tls, "files", "other.crt", "other.key"))).returncode == 0
    text = config.read_text() + (
        f'\n[health]\nexim_spool = "{tls.root / "none"}"\ndnsbl_zones = []\nspamd_log = ""\n'
        f'paniclog = "{tls.root / "none.log"}"\ntls_defaults = false\n'
        '[jobs.learn-spam]\nenabled = false\n[jobs.sa-update]\nenabled = false\n')
    config.write_text(text.replace('\n[health]\nenabled = false', '', 1))

    def files_check(service: str) -> dict[str, str]:
        res = run_cli(config, "health", "--json")
        found: dict[str, str] = next(c for c in json.loads(res.stdout)
                                     if c["name"] == f"tls_files {service}")
        return found

    assert files_check("exim")["status"] == "OK"
    assert files_check("dovecot")["status"] == "OK"
    exim_key = tls.root / name / "dest" / "exim" / "privkey.pem"
    exim_key.chmod(0o600)  # the seed's failure: root-only key after a renewal
    check = files_check("exim")
    assert check["status"] == "CRIT" and "Debian-exim cannot read" in check["figure"]
    exim_key.write_bytes((tls.certs / "short.key").read_bytes())
    exim_key.chmod(0o640)
    check = files_check("exim")
    assert check["status"] == "CRIT" and "is not the key of" in check["figure"]
