"""scan-log's start-up: CPU time of `mailopsd scan-log --no-config` on an empty log vs the bare
interpreter, the parser alone and the imports, each a fresh process (median and min of --runs).

    .venv/bin/python bench/scan_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def cpu_ms(argv: list[str], runs: int) -> tuple[float, float]:
    """(median, min) CPU ms of the child (user + system, from wait4), output discarded."""
    out = []
    for _ in range(runs):
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execv(argv[0], argv)
        _, _, ru = os.wait4(pid, 0)
        out.append((ru.ru_utime + ru.ru_stime) * 1000)
    return statistics.median(out), min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py, mailopsd = str(BIN / "python"), str(BIN / "mailopsd")
    with tempfile.NamedTemporaryFile(suffix=".log") as empty:
        cases = [
            ("python -c pass", [py, "-c", "pass"]),
            ("scan-log --no-config EMPTY", [mailopsd, "scan-log", "--no-config", empty.name]),
            ("scan-log --help", [mailopsd, "scan-log", "--help"]),
            ("import psutil; net_if_addrs()", [py, "-c", "import psutil; psutil.net_if_addrs()"]),
            ("the full CLI parser", [py, "-c", "import mailopsd.cli.main as m; m.build_parser()"]),
        ]
        print(f"load average {os.getloadavg()[0]:.2f}; CPU ms, {args.runs} runs each")
        for name, argv in cases:
            med, low = cpu_ms(argv, args.runs)
            print(f"{name:<32} median {med:6.1f}  min {low:6.1f}")


if __name__ == "__main__":
    main()
