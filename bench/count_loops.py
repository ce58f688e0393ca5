"""The ban policy's counting loop, C (``_fastcount``) against Python (``_count_events_py``).

    .venv/bin/python bench/count_loops.py [LOG] [--runs 5]

Two measurements (issue 12 item 3): the events of a whole log (default: the bench's 200k-line
log, made by ``bench/scan_vs_fail2ban.py --keep /var/tmp/i12bench``) counted block by block
into a fresh policy, as scan-log does; and the daemon's path, ``BanPolicy.count`` one event per
call (100,000 calls over 5,000 addresses), where the C loop's per-call set-up must not cost more
than it saves. Prints the best and median of each, per loop.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from mailopsd.blocker import batch, scan
from mailopsd.blocker import policy as policy_mod
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.core.config import parse_config

Count = Callable[[BanPolicy, Any, list[Any]], None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log", nargs="?", default="/var/tmp/i12bench/mainlog")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if batch._fastcount is None:
        raise SystemExit("the _fastcount extension is not built")
    cfg = parse_config({"blocker": {"ignore_self": False}}).blocker
    probe = BanPolicy(cfg, IgnoreList(()))
    parse = scan.block_parser(list(probe.parser.keywords or ()), probe.parser)
    with open(args.log, "rb") as f:
        blocks = [parse(body)[0] for body in scan.blocks(f, args.log)]
    ips = [f"198.51.{i >> 8 & 255}.{i & 255}" for i in range(5000)]
    rules = list(probe.rules)
    one = [(rules[i % len(rules)], ips[i * 7919 % 5000], 1.8e9 + i / 100) for i in range(100_000)]
    loops: dict[str, Count] = {"C": batch._fastcount.count, "Python": batch._count_events_py}
    for name, count in loops.items():
        whole, daemon = [], []
        for _ in range(args.runs):
            p, out = BanPolicy(cfg, IgnoreList(())), []
            t = time.perf_counter()
            for events in blocks:
                count(p, events, out)
            whole.append(time.perf_counter() - t)
            policy_mod.count_events = count  # what BanPolicy.count calls
            p = BanPolicy(cfg, IgnoreList(()))
            c = p.count
            t = time.perf_counter()
            for r, ip, w in one:
                c(r, ip, w)
            daemon.append((time.perf_counter() - t) / len(one))
        policy_mod.count_events = batch.count_events
        print(f"{name:6s} log ({sum(map(len, blocks))} events): best {min(whole) * 1e3:.2f} ms, "
              f"median {statistics.median(whole) * 1e3:.2f} ms; BanPolicy.count one event: "
              f"best {min(daemon) * 1e9:.0f} ns, median {statistics.median(daemon) * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
