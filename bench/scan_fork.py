"""`mailopsd scan-log` in one process vs with its second-half child (mailopsd/blocker/scanfork.py),
paired, start-up included.

    .venv/bin/python bench/scan_fork.py LOG [--runs 10]

scan-log forks only when a second CPU looks idle (load average); this forces each way so that
both can be timed on the same machine state. Prints min/median/max wall seconds of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CODE = ("import sys; from mailopsd.blocker import scanfork; "
        "scanfork._spare_cpu = (lambda: sys.argv[1] == 'fork'); "
        "from mailopsd.cli.main import main; "
        "sys.exit(main(['scan-log', '--no-config', sys.argv[2]]))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    walls: dict[str, list[float]] = {"one process": [], "forked child": []}
    print(f"load average at the start {os.getloadavg()[0]:.2f}")
    for _ in range(args.runs):
        for name, mode in (("one process", "serial"), ("forked child", "fork")):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", CODE, mode, args.log],
                           stdout=subprocess.DEVNULL, check=True)
            walls[name].append(time.perf_counter() - t0)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    for name, w in walls.items():
        w.sort()
        print(f"{name:<13} wall s min {w[0]:.3f} median {statistics.median(w):.3f} max {w[-1]:.3f}")


if __name__ == "__main__":
    main()
