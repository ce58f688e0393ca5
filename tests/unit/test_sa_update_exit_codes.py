"""The sa-update job's reaction to each exit code, with scripted stand-ins for sa-update and
spamassassin (codes the real tools cannot produce offline: 1 needs the network's DNS answer,
2, 3 and 64 need broken site files or several channels). The real tools are exercised in
tests/integration/test_sa_update_real.py."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job

# Writes ``# UPDATE version <n>`` into --updatedir when told to, exits with the scripted code.
FAKE_SA_UPDATE = """#!/bin/sh
here="$(dirname "$0")"
while [ $# -gt 0 ]; do [ "$1" = --updatedir ] && dir="$2"; shift; done
action="$(cat "$here/action")"
case "$action" in
  write:*) mkdir -p "$dir/updates_spamassassin_org"
           echo "# UPDATE version ${action#write:}" > "$dir/updates_spamassassin_org.cf";;
  empty)   rm -rf "$dir"; mkdir -p "$dir/updates_spamassassin_org";;  # the trap
esac
echo "fake sa-update: $action" >&2
exit "$(cat "$here/rc")"
"""
FAKE_SPAMASSASSIN = """#!/bin/sh
here="$(dirname "$0")"
case "$1" in
  --version) echo "SpamAssassin version 4.0.1"; echo "  running on Perl version 5.36.0";;
  --lint) echo lint >> "$here/lint-calls"; exit "$(cat "$here/lint-rc")";;
esac
"""


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def run_update(tmp_path: Path, rc: int, action: str, lint_rc: int = 0
               ) -> tuple[RunOutcome, list[str], Path]:
    """One sa-update job run with the scripted tools; returns outcome, event names, rules dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "rc").write_text(str(rc))
    (bin_dir / "action").write_text(action)
    (bin_dir / "lint-rc").write_text(str(lint_rc))
    cfg = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
        "binaries": {"sa_update": _script(bin_dir / "sa-update", FAKE_SA_UPDATE),
                     "spamassassin": _script(bin_dir / "spamassassin", FAKE_SPAMASSASSIN),
                     "python3": sys.executable},
        "spamassassin": {"rules_owner": getpass.getuser(), "update_dir": str(tmp_path / "sa"),
                         "spamd_units": [], "spamd_pidfile": str(tmp_path / "spamd.pid")},
    })
    (tmp_path / "sa").mkdir(exist_ok=True)
    with capture_logs() as events:
        outcome = run_job("sa-update", cfg, StateDB(cfg.daemon.state_dir))
    return outcome, [str(e["event"]) for e in events], tmp_path / "sa" / "4.000001"


def _version(rules: Path) -> str | None:
    cf = rules / "updates_spamassassin_org.cf"
    return cf.read_text().split()[-1] if cf.exists() else None


def test_rc1_no_updates_touches_nothing(tmp_path: Path) -> None:
    run_update(tmp_path, 0, "write:100")
    outcome, events, rules = run_update(tmp_path, 1, "none")
    assert outcome.result == "ok" and outcome.counts == {"rc": 1, "outcome": "no_updates"}
    assert "sa_update_no_updates" in events and "spamd_not_running" not in events
    assert _version(rules) == "100"


def test_rc1_that_changed_the_rules_is_linted_and_rolled_back(tmp_path: Path) -> None:
    run_update(tmp_path, 0, "write:100")
    outcome, events, rules = run_update(tmp_path, 1, "write:101", lint_rc=1)
    assert outcome.result == "failed" and "sa_update_rules_restored" in events
    assert _version(rules) == "100"


def test_rc3_installs_what_succeeded_but_fails_the_job(tmp_path: Path) -> None:
    outcome, events, rules = run_update(tmp_path, 3, "write:200")
    assert outcome.result == "failed" and "some channels failed" in (outcome.error or "")
    assert "sa_update_partial" in events and "spamd_not_running" in events  # reload tried
    assert _version(rules) == "200" and outcome.counts["lint"] == "ok"


@pytest.mark.parametrize(("rc", "why"), [(2, "lint of the site .pre files"),
                                         (64, "usage"), (255, "died")])
def test_failures_restore_a_changed_directory(tmp_path: Path, rc: int, why: str) -> None:
    run_update(tmp_path, 0, "write:100")
    outcome, events, rules = run_update(tmp_path, rc, "empty")  # half-written
    assert outcome.result == "failed" and why in (outcome.error or "")
    assert "sa_update_rules_restored" in events and "spamd_not_running" not in events
    assert _version(rules) == "100"
    assert sorted(os.listdir(rules.parent)) == ["4.000001"]  # no snapshot left


def test_lint_is_never_skipped_and_failure_means_no_reload(tmp_path: Path) -> None:
    outcome, events, rules = run_update(tmp_path, 0, "write:300", lint_rc=255)
    assert outcome.result == "failed" and "sa_update_lint_failed" in events
    assert not rules.exists()  # first update ever: back to "no update directory"
    assert not any(e.startswith("spamd_") for e in events)
    assert (tmp_path / "bin" / "lint-calls").read_text().count("lint") == 1
