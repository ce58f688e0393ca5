"""The README's self-contained demo: real mailopsd on a throwaway sandbox, removed at the end.

Run as root after scripts/install.sh (scripts/quickstart.sh does both):
    .venv/bin/python scripts/demo.py [--keep]
Each step prints the command it runs and its output, so an admin sees exactly what to type.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.demo_areas import (  # noqa: E402
    banner,
    demo_blocker,
    demo_learn_spam,
    demo_sent,
    mailopsd,
)
from tests.support.daemon import MailopsdProcess, write_config  # noqa: E402

STEPS = {"core": None, "blocker": demo_blocker, "learn-spam": demo_learn_spam,
         "sent": demo_sent}


def demo_core(root: Path) -> Path:
    """Start the daemon, list its jobs, run a job through run-job, show status, stop."""
    config = write_config(root, logging={"target": "json", "level": "info"})
    banner("check the configuration")
    mailopsd(config, "check-config")
    banner("start the daemon (what systemd runs: `mailopsd run`)")
    with MailopsdProcess(config) as daemon:
        started = daemon.wait_event("daemon_started", timeout=15)
        print(f"  daemon pid {daemon.pid} serving; jobs: {', '.join(started['jobs'])}")
        banner("list the jobs: schedule, next run, last run")
        mailopsd(config, "jobs")
        banner("run a job now, through exactly the code the scheduler runs")
        mailopsd(config, "run-job", "housekeeping")
        banner("status while the daemon runs")
        mailopsd(config, "status")
        daemon.signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=30)
        print(f"  daemon stopped on SIGTERM (exit {code})")
    mailopsd(config, "jobs")
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    parser.add_argument("--only", choices=tuple(STEPS), action="append",
                        help="run only these steps (repeatable); default: all")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailopsd-demo-", dir="/var/tmp"))
    root.chmod(0o755)
    start = time.monotonic()
    try:
        for name, step in STEPS.items():
            if args.only and name not in args.only:
                continue
            if step is None:
                demo_core(root)
            else:
                step(root)
    finally:
        if args.keep:
            print(f"\nsandbox kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    banner(f"demo finished in {time.monotonic() - start:.1f}s; sandbox removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
