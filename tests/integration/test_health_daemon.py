"""The daemon's health service: events in seconds (journald, with fields), /metrics, textfile.

A real private Exim writes a paniclog line and freezes a bounce while `mailopsd run` watches
its spool and paniclog; the events reach a real journald with LINE / FROZEN fields. The blocker
and job metrics come from the state database (bans, job_runs, log_positions) and the mainlog.
"""

from __future__ import annotations

import os
import stat
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailopsd.core.state import StateDB
from mailopsd.health.metrics import METRICS
from tests.integration.test_health_exim_spamd import BROKEN_ROUTERS, value
from tests.support.common import free_port, scratch_root, wait_until
from tests.support.daemon import MailopsdProcess, write_config
from tests.support.exim import PrivateExim
from tests.support.journald import private_journald

pytestmark = pytest.mark.integration


def seed_state(state_dir: Path, mainlog: Path) -> None:
    """Bans, job runs and a mainlog position, as the blocker and runner record them."""
    db = StateDB(str(state_dir))
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 120))
    mainlog.write_text(f"{stamp} first line\n{stamp} second line, not read yet\n")
    st = mainlog.stat()
    with db.transaction() as conn:
        for ip, rule, active, times in (("192.0.2.1", "auth", 1, 2), ("192.0.2.2", "auth", 1, 1),
                                        ("192.0.2.3", "relay", 0, 3)):
            conn.execute("INSERT INTO bans (ip, rule, first_seen, last_seen, banned_at, "
                         "times_banned, active) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (ip, rule, now, now, now, times, active))
        conn.execute("INSERT INTO log_positions (name, path, dev, ino, offset, "
                     "first_line_hash, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     ("blocker:" + str(mainlog), str(mainlog), st.st_dev, st.st_ino,
                      len(f"{stamp} first line\n"), "x", now))
    run = db.job_started("bayes-stats", "schedule", started=now - 10)
    db.job_finished(run, "ok")
    run = db.job_started("bayes-stats", "schedule", started=now - 5)
    db.job_finished(run, "failed", error="boom")


def test_daemon_logs_paniclog_and_frozen_events_within_seconds_and_serves_metrics() -> None:
    with scratch_root() as root, private_journald() as journald, \
            PrivateExim(root, extra_routers=BROKEN_ROUTERS) as exim:
        mo = root / "mo"
        mainlog = root / "mainlog"
        port = free_port()
        prom = root / "textfile" / "mailopsd.prom"
        prom.parent.mkdir()
        ident = f"mailopsd-{root.name}"
        config = write_config(
            mo, logging={"target": "journald", "journal_socket": journald.socket_path,
                         "syslog_identifier": ident},
            metrics={"listen": f"127.0.0.1:{port}", "textfile": str(prom)},
            health={"enabled": True, "exim_spool": str(exim.spool),
                    "paniclog": str(exim.paniclog), "spamd_log": "", "dnsbl_zones": [],
                    "tls_defaults": False, "poll_interval": "0.3s", "interval": "1h"},
            blocker={"enabled": False, "mainlog": str(mainlog)},
            jobs={"learn-spam": {"enabled": False}, "sa-update": {"enabled": False}})
        seed_state(mo / "state", mainlog)
        with MailopsdProcess(config) as daemon:
            journald.query(f"SYSLOG_IDENTIFIER={ident}", "EVENT=metrics_listening", timeout=20)
            families = scrape(port)
            names = {f.name for f in families}
            assert all((n[:-6] if k == "counter" else n) in names
                       for n, (k, _d, _l) in METRICS.items())
            assert value(families, "mailopsd_bans_active", backend="iptables", rule="auth") == 2
            assert value(families, "mailopsd_bans_total", rule="relay") == 3
            assert value(families, "mailopsd_job_runs_total", job="bayes-stats",
                         result="failed") == 1
            assert value(families, "mailopsd_job_last_success_timestamp_seconds",
                         job="bayes-stats") > 0
            # the blocker is off here, so its mainlog position says nothing: no lag sample
            # (tests/unit/test_health_statedb.py covers the log figures)
            with pytest.raises(AssertionError):
                value(families, "mailopsd_log_lag_seconds")
            assert value(families, "exim_queue_messages") == 0

            sent = time.monotonic()
            exim.exim("-odi", "-f", "alice@example.test", "panic@example.test",
                      input="Subject: x\n\ny\n")
            rows = journald.query(f"SYSLOG_IDENTIFIER={ident}", "EVENT=exim_paniclog_written",
                                  timeout=15)
            assert rows and time.monotonic() - sent < 10
            assert "bogus_op" in rows[0]["LINE"] and rows[0]["PRIORITY"] == "3"
            frozen = journald.query(f"SYSLOG_IDENTIFIER={ident}", "EVENT=exim_queue_frozen",
                                    timeout=10)
            assert frozen and frozen[0]["FROZEN"] == "1" and frozen[0]["CHECK"] == "exim_frozen"
            assert frozen[0]["ACTION"]

            wait_until(lambda: value(scrape(port), "exim_queue_frozen_messages") == 1, 10,
                       what="the frozen bounce in /metrics")
            wait_until(lambda: prom.exists() and b"exim_paniclog_lines_total 1.0" in
                       prom.read_bytes(), 10, what="the textfile to show the paniclog line")
            assert stat.S_IMODE(prom.stat().st_mode) == 0o644
            assert not [p for p in os.listdir(prom.parent) if p != prom.name]  # no temp left
            assert daemon.proc.poll() is None
        assert daemon.proc.returncode == 0


def scrape(port: int) -> list[Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return list(text_string_to_metric_families(resp.read().decode()))
