"""What reading the kernel costs ``mailopsd bans list`` (the KERNEL column), per backend.

    .venv/bin/python bench/bans_list.py [--bans 10000] [--runs 3]

In a network namespace made here (never the host's firewall): N bans recorded in a scratch state
database and loaded into the kernel in one commit, then ``mailopsd bans list --json`` timed with
and without ``--no-kernel``. Median of --runs. Needs root.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.common import scratch_root
from tests.support.daemon import MAILOPSD, write_config
from tests.support.netns import Netns

LOAD = """
import sys, time
from mailopsd.blocker.store import BanStore
from mailopsd.core.config import load_config
from mailopsd.core.state import StateDB
from mailopsd.firewall import make_backend
cfg = load_config(sys.argv[1]); n = int(sys.argv[2])
store = BanStore(StateDB(cfg.daemon.state_dir))
now = time.time()
ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, n + 1)]
for ip in ips:
    store.record(ip, "no-rdns", "", count=3, first_seen=now, last_seen=now, expires=now + 3600)
make_backend(cfg).restore({ip: 3600.0 for ip in ips})
"""


def timed(ns: Netns, argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(ns.argv(argv), check=True, capture_output=True, timeout=600)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bans", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for backend in ("iptables", "nftables"):
        with scratch_root() as root, Netns("mobl") as ns:
            cfg = write_config(root, logging={"target": "json", "level": "error"},
                               blocker={"enabled": True, "firewall": {"backend": backend,
                                                                      "ipv6": False}})
            ns.run([sys.executable, "-c", LOAD, str(cfg), str(args.bans)], timeout=900)
            base = [MAILOPSD, "--config", str(cfg), "bans", "list", "--json"]
            no_kernel = timed(ns, [*base, "--no-kernel"], args.runs)
            kernel = timed(ns, base, args.runs)
            print(f"{backend:9} {args.bans} bans: list --no-kernel {no_kernel:.2f} s, "
                  f"list with the kernel {kernel:.2f} s (ratio {kernel / no_kernel:.2f})")
            ns.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False, timeout=600)


if __name__ == "__main__":
    main()
