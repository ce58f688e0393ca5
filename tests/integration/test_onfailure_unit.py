"""The OnFailure= example in the docs: a template unit systemd accepts, mailing via sendmail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mailopsd-failed@.service"


def test_on_failure_template_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    instance = tmp_path / "mailopsd-failed@mailopsd.service.service"
    shutil.copy(UNIT, instance)
    r = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0 and "mailopsd-failed" not in r.stderr, r.stderr
    text = UNIT.read_text()
    assert "OnFailure=mailopsd-failed@%%n.service" in text  # the drop-in it documents
    assert "/usr/sbin/sendmail -oi -t" in text and "Auto-Submitted: auto-generated" in text
    docs = (REPO / "docs" / "status-and-alerts.md").read_text()
    assert "OnFailure=mailopsd-failed@%n.service" in docs
