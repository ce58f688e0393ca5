"""`mailopsd health` and its metrics against a real private Exim spool and a real spamd's log.

Exim itself writes the paniclog line (a router whose condition cannot be expanded), queues a
deferred message and freezes a bounce; spamd scans messages with a test rule whose name ends in
_BLOCKED (no Bayes database: every scan is "without Bayes"). The scrape is parsed with
prometheus_client's own parser and, where Debian has it, checked with promtool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailopsd.health.metrics import METRICS
from tests.support.common import free_port, kill_pid, read_pid, wait_until
from tests.support.daemon import run_cli, write_config
from tests.support.exim import PrivateExim

pytestmark = pytest.mark.integration

BROKEN_ROUTERS = """
aliases_missing:
  driver = redirect
  local_parts = deferred
  data = ${lookup{$local_part}lsearch{/nonexistent/mailopsd-aliases}}
broken_condition:
  driver = redirect
  local_parts = panic
  condition = ${bogus_op:x}
  data = nobody@example.test
"""
SPAMD_RULES = """
required_score 5.0
header RCVD_IN_MAILOPSD_BLOCKED Subject =~ /blocked/
describe RCVD_IN_MAILOPSD_BLOCKED test rule named like SpamAssassin's DNSBL refusals
score RCVD_IN_MAILOPSD_BLOCKED 0.1
use_bayes 0
"""


@dataclass
class Scene:
    root: Path
    exim: PrivateExim
    spamd_log: Path
    config: Path


def start_spamd(root: Path) -> tuple[int, Path, Path]:
    rules = root / "sa-rules"
    rules.mkdir()
    (rules / "50_test.cf").write_text(SPAMD_RULES)
    for stock in ("10_default_prefs.cf", "20_aux_tlds.cf"):  # quick to load, lint-clean
        shutil.copy(Path("/usr/share/spamassassin") / stock, rules / stock)
    site = root / "sa-site"  # the .pre files (plugins) minus URIDetail, no local.cf
    site.mkdir()
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        lines = pre.read_text().splitlines(keepends=True)
        (site / pre.name).write_text("".join(x for x in lines if "URIDetail" not in x))
    port, pidfile, log = free_port(), root / "spamd.pid", root / "spamd.log"
    subprocess.run(["spamd", "-i", f"127.0.0.1:{port}", "--pidfile", str(pidfile), "-s",
                    str(log), "-d", "-m", "1", "--min-spare", "1", "-x", "--configpath",
                    str(rules), "--siteconfigpath", str(site)],
                   check=True, timeout=60, capture_output=True)
    wait_until(lambda: log.exists() and "server started on" in log.read_text() and
               read_pid(pidfile), 30, what="spamd to start")
    return port, pidfile, log


def spamc(port: int, subject: str) -> None:
    msg = f"From: a@example.test\nTo: b@example.test\nSubject: {subject}\n\nhello\n".encode()
    subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-c"], input=msg,
                   capture_output=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    from tests.support.common import scratch_root

    with scratch_root() as root, PrivateExim(root, extra_routers=BROKEN_ROUTERS) as exim:
        msg = "Subject: health test\n\nbody\n"
        exim.exim("-odi", "-f", "alice@example.test", "deferred@example.test", input=msg)
        exim.exim("-odi", "-f", "alice@example.test", "panic@example.test", input=msg)
        wait_until(lambda: exim.paniclog.exists() and exim.paniclog.stat().st_size, 20,
                   what="Exim to write its paniclog")
        port, pidfile, log = start_spamd(root)
        try:
            for subject in ("blocked one", "blocked two", "fine"):
                spamc(port, subject)
            wait_until(lambda: log.read_text().count("spamd: result:") == 3, 30,
                       what="spamd's three result lines")
        finally:
            pid = read_pid(pidfile)
            if pid:
                kill_pid(pid)
        rules_dir = root / "sa-update" / "4.000001"
        rules_dir.mkdir(parents=True)
        cf = rules_dir / "updates_spamassassin_org.cf"
        cf.write_text("# rules\n")
        old = time.time() - 60 * 86400
        os.utime(cf, (old, old))
        config = write_config(
            root / "mo",
            health={"exim_spool": str(exim.spool), "paniclog": str(exim.paniclog),
                    "spamd_log": str(log), "dnsbl_zones": [], "tls_defaults": False},
            spamassassin={"update_dir": str(root / "sa-update")},
            jobs={"learn-spam": {"enabled": False}})
        yield Scene(root, exim, log, config)


def checks_by_name(scene: Scene) -> tuple[int, dict[str, dict[str, str]]]:
    res = run_cli(scene.config, "health", "--json")
    return res.returncode, {c["name"]: c for c in json.loads(res.stdout)}


def test_health_reports_queue_frozen_paniclog_and_spamd_with_nagios_exit(scene: Scene) -> None:
    rc, checks = checks_by_name(scene)
    assert rc == 2  # the paniclog got a line today: CRIT
    assert checks["exim_queue"]["status"] == "OK"
    assert checks["exim_queue"]["figure"] == "2 message(s)"
    assert checks["exim_frozen"]["status"] == "WARN"
    assert checks["exim_frozen"]["figure"] == "1 frozen message(s)"
    assert checks["exim_paniclog"]["status"] == "CRIT"
    assert "bogus_op" in checks["exim_paniclog"]["figure"]
    assert checks["spamd_blocked_rules"]["status"] == "WARN"
    assert "RCVD_IN_MAILOPSD_BLOCKED 2" in checks["spamd_blocked_rules"]["figure"]
    assert checks["spamd_bayes"]["status"] == "WARN"
    assert checks["spamassassin_rules_age"]["status"] == "WARN"
    assert "spamassassin_bayes" not in checks  # learn-spam is off: no Bayes check at all
    assert all(set(c) == {"name", "status", "figure", "action"} for c in checks.values())
    assert all(c["action"] for c in checks.values() if c["status"] != "OK")


def test_queue_count_matches_exim_bpc_and_age_comes_from_arrival_time(scene: Scene) -> None:
    inp = scene.exim.spool / "input"
    for h in inp.glob("*-H"):  # an ancient mtime must not make the queue look old
        os.utime(h, (1_000_000_000, 1_000_000_000))
    families = scrape(scene)
    bpc = int(scene.exim.exim("-bpc").stdout.strip())
    assert value(families, "exim_queue_messages") == bpc == 2
    assert value(families, "exim_queue_frozen_messages") == 1
    assert 0 <= value(families, "exim_queue_oldest_message_age_seconds") < 600


def test_scrape_parses_and_exposes_every_metric_from_the_start(scene: Scene) -> None:
    families = scrape(scene)
    names = {f.name for f in families}
    for name, (kind, _doc, _labels) in METRICS.items():
        assert (name[:-len("_total")] if kind == "counter" else name) in names, name
    assert value(families, "exim_paniclog_lines_total") == 1
    assert value(families, "spamd_messages_total", result="ham") == 3
    assert value(families, "spamd_messages_total", result="spam") == 0
    assert value(families, "spamd_rule_hits_total", rule="RCVD_IN_MAILOPSD_BLOCKED") == 2
    assert value(families, "spamd_messages_without_bayes_total") == 3
    assert 59 * 86400 < value(families, "spamassassin_rules_age_seconds") < 61 * 86400
    assert value(families, "mailopsd_health_check_status", check="exim_paniclog") == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_scrape_passes_promtool(scene: Scene) -> None:
    text = run_cli(scene.config, "health", "--prometheus").stdout
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_empty_paniclog_and_queue_give_exit_zero(scene: Scene) -> None:
    spool = scene.root / "empty-spool"
    (spool / "input").mkdir(parents=True)
    config = write_config(
        scene.root / "mo-ok",
        health={"exim_spool": str(spool), "paniclog": str(scene.root / "no-paniclog"),
                "spamd_log": "", "dnsbl_zones": [], "tls_defaults": False},
        jobs={"learn-spam": {"enabled": False}, "sa-update": {"enabled": False}})
    res = run_cli(config, "health")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0].startswith("OK      exim_queue")


def scrape(scene: Scene) -> list[Any]:
    res = run_cli(scene.config, "health", "--prometheus")
    assert res.stdout.startswith("# HELP"), res.stderr
    return list(text_string_to_metric_families(res.stdout))


def value(families: list[Any], name: str, **labels: str) -> float:
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_bayes_counts_come_from_the_real_database(scene: Scene) -> None:
    from tests.support.users import TestUser

    with TestUser(scene.root) as owner:
        for kind, words in (("spam", "cheap pills casino winner"), ("ham", "meeting agenda")):
            folder = scene.root / f"bayes-{kind}"
            folder.mkdir(mode=0o755)
            for i in range(3):
                (folder / f"{i}.eml").write_text(
                    f"From: s{i}@example.test\nTo: u@example.test\nSubject: {kind} {i}\n"
                    f"Message-ID: <{kind}{i}@example.test>\n\n{words} {i} {kind}{i * 7}\n")
                (folder / f"{i}.eml").chmod(0o644)
            owner.run(["sa-learn", f"--{kind}", str(folder)], timeout=120)
        config = write_config(
            scene.root / "mo-bayes",
            health={"exim_spool": str(scene.root / "none"), "paniclog": str(scene.root / "x"),
                    "spamd_log": "", "dnsbl_zones": [], "tls_defaults": False},
            spamassassin={"bayes_owner": owner.name},
            jobs={"sa-update": {"enabled": False}})
        res = run_cli(config, "health", "--json")
        (bayes,) = [c for c in json.loads(res.stdout) if c["name"] == "spamassassin_bayes"]
        assert res.returncode == 1 and bayes["status"] == "WARN"
        assert "nspam 3 and nham 3 below 200" in bayes["figure"]
        families = list(text_string_to_metric_families(
            run_cli(config, "health", "--prometheus").stdout))
        assert value(families, "spamassassin_bayes_messages", **{"class": "spam"}) == 3
        assert value(families, "spamassassin_bayes_tokens", kind="all") > 0
