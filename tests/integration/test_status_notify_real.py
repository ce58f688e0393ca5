"""Being told, for real: failure mails through a real Exim, status of a real daemon.

``[binaries] sendmail`` is a two-line wrapper around the real exim4 with a private config (the
only way to point Exim's sendmail interface at a sandbox); mail lands in a real user's Maildir.
A failed ``run-job`` mails once per ``notify.interval`` across processes; a daemon whose blocker
follows nothing is degraded: ``status`` exits 1 naming it and one mail says so; once the mainlog
appears, status is healthy again.
"""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest

from tests.support.common import wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, run_cli, write_config
from tests.support.exim import PrivateExim
from tests.support.netns import Netns
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


def mails(user: TestUser) -> list[email.message.Message]:
    new = user.maildir / "new"
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())] \
        if new.is_dir() else []


def test_failed_jobs_and_a_degraded_blocker_mail_the_admin_and_status_says_why(
        mail_root: Path) -> None:
    with TestUser(mail_root) as admin, PrivateExim(mail_root) as exim, \
            Netns("monot") as ns:
        wrapper = mail_root / "sendmail"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/sbin/exim4 -C {exim.config_path} -odi "$@"\n')
        wrapper.chmod(0o755)
        logdir = mail_root / "exim4-not-yet"
        cfg = write_config(
            mail_root / "m", binaries={"sendmail": str(wrapper)},
            notify={"mail_to": [admin.address], "interval": "1h"},
            jobs={"make-forwards": {"enabled": True,
                                    "template": str(mail_root / "missing.template")}},
            blocker={"enabled": True, "mainlog": str(logdir / "mainlog"),
                     "flood": {"enabled": False},
                     "firewall": {"check_interval": "200ms", "verify_interval": "1s"}})

        for _ in range(2):  # two failures inside the interval: one mail
            r = run_cli(cfg, "run-job", "make-forwards")
            assert r.returncode == 1, r.stderr
        got = wait_until(lambda: mails(admin), 20, what="the failure mail")
        assert len(got) == 1
        body = got[0].get_payload(decode=True).decode()
        assert "job make-forwards failed" in got[0]["Subject"]
        assert got[0]["Auto-Submitted"] == "auto-generated"
        assert "missing.template" in body and "started by: run-job" in body
        assert "job_failed" in body  # the run's last log lines
        history = json.loads(run_cli(cfg, "jobs", "--history", "make-forwards",
                                     "--json").stdout)
        assert [h["result"] for h in history] == ["failed", "failed"]

        d = MailopsdProcess(cfg, argv=ns.argv([MAILOPSD, "--config", str(cfg), "run"]))
        try:
            d.wait_event("service_degraded", timeout=30, service="blocker")
            r = ns.run([MAILOPSD, "--config", str(cfg), "status", "--json"], check=False)
            status = json.loads(r.stdout)
            assert r.returncode == 1
            assert status["blocker"]["file"] == str(logdir / "mainlog")
            assert status["blocker"]["following"] is False
            assert any("following nothing" in p for p in status["problems"])
            assert any("job make-forwards: last run failed" in p for p in status["problems"])
            wait_until(lambda: len(mails(admin)) == 2, 20, what="the degraded-service mail")
            assert "service blocker degraded" in mails(admin)[1]["Subject"]

            logdir.mkdir()
            (logdir / "mainlog").write_text("")
            d.wait_event("service_recovered", timeout=30, service="blocker")
            r = ns.run([MAILOPSD, "--config", str(cfg), "status"], check=False)
            assert f"following {logdir / 'mainlog'} at byte 0" in r.stdout
            assert "kernel check" in r.stdout
        finally:
            assert d.stop(timeout=20) == 0
        r = ns.run([MAILOPSD, "--config", str(cfg), "status"], check=False)
        assert r.returncode == 3 and "daemon: not running" in r.stdout
        ns.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False)
