"""Start-up time of `mailopsd --help`, `jobs`, `check-config` and `config show` (lazy imports
keep the CLI fast; check-config reads 10 drop-ins and checks the machine).

    .venv/bin/python bench/startup.py [--runs 20]

Prints the median and p90 wall time of each command over N runs, next to a bare
`python -c pass` as the floor, and which heavy modules `--help` imported (should be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))
HEAVY = ("apscheduler", "structlog", "watchdog", "iptc", "psutil", "sqlite3", "tomllib")


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mailopsd.toml"
        config.write_text(f'[daemon]\nstate_dir = "{tmp}/state"\nrun_dir = "{tmp}/run"\n')
        dropins = Path(tmp) / "mailopsd.d"
        dropins.mkdir()
        for i in range(10):
            (dropins / f"{i:02d}-local.toml").write_text(
                f'[blocker]\nignore = ["198.51.100.{i}"]\n'
                f'[blocker.rules.auth-failed]\nmaxretry = {i + 3}\n')
        cases = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "mailopsd --help": [MAILOPSD, "--help"],
            "mailopsd jobs": [MAILOPSD, "--config", str(config), "jobs"],
            "mailopsd check-config": [MAILOPSD, "--config", str(config), "check-config"],
            "mailopsd config show": [MAILOPSD, "--config", str(config), "config", "show"],
        }
        print(f"{'command':28} {'median ms':>10} {'p90 ms':>8}   ({args.runs} runs)")
        for name, argv in cases.items():
            t = sorted(timed(argv, args.runs))
            print(f"{name:28} {statistics.median(t):10.1f} {t[int(0.9 * (len(t) - 1))]:8.1f}")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from mailopsd.cli.main import build_parser; "
         "build_parser(); print(' '.join(sorted(m for m in sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in HEAVY if m in probe]
    print(f"heavy modules imported to build --help: {heavy or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
