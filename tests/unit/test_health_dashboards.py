"""The shipped alert rules and Grafana dashboard use exactly the metric names mailopsd exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailopsd.health.metrics import METRICS

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "etc" / "prometheus" / "mailopsd-alerts.yml"
DASHBOARD = REPO / "etc" / "grafana" / "mailopsd-dashboard.json"
_NAME = re.compile(r"\b((?:mailopsd|exim|spamd|spamassassin|dnsbl|tls|dns)_[a-z_]+)\b")


def _names(text: str) -> set[str]:
    return set(_NAME.findall(text))


def test_dashboard_queries_only_known_metrics_and_shows_every_one() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    used = _names(exprs)
    assert used <= set(METRICS), used - set(METRICS)
    assert set(METRICS) - used <= {"mailopsd_log_unread_bytes"}


def test_alert_rules_use_only_known_metrics() -> None:
    exprs = " ".join(re.findall(r"expr: (.*)", ALERTS.read_text()))
    assert _names(exprs) <= set(METRICS), _names(exprs) - set(METRICS)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_alert_rules_pass_promtool() -> None:
    res = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_alert_rules_fire_on_mailopsd_series() -> None:
    res = subprocess.run(["promtool", "test", "rules", "mailopsd-alerts.test.yml"],
                         cwd=ALERTS.parent, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
