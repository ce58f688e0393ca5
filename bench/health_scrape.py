#!/usr/bin/env python3
"""Scrape cost with a big Exim queue (issue 18). Run as root from the repository:

    .venv/bin/python bench/health_scrape.py [--messages 10000] [--runs 15]

A private Exim queues one real message (-odq); its -H/-D files are copied under 10,000 distinct
message ids (1 % of them frozen, arrival times spread over a day), so Exim itself lists them.
Side by side, median of --runs:
- mailopsd: a full /metrics exposition (spool listing + state database + text), cold (first,
  every -H file read) and warm (inodes from the listing; only new -H files read); no fork;
- peer: `exim -bpc` (count only; what a script exporter forks per scrape) and `exim -bp` (needed
  for frozen count and oldest age), each one fork of Exim per scrape.
Goal: warm scrape <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailopsd.core.config import parse_config
from mailopsd.health.checks import HealthChecks
from mailopsd.health.metrics import exposition, make_registry
from tests.support.common import scratch_root
from tests.support.exim import PrivateExim

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def b62(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out


def fill_queue(exim: PrivateExim, count: int) -> None:
    exim.exim("-odq", "-f", "alice@example.test", "bob@remote.test",
              input="Subject: queued\n\nbody\n")
    inp = exim.spool / "input"
    (h_file,) = inp.glob("*-H")
    real_id = h_file.name[:-2]
    header = h_file.read_text()
    data = (inp / f"{real_id}-D").read_text()
    now = int(time.time())
    for i in range(count):
        arrival = now - (i * 86400 // count)
        mid = f"{b62(arrival, 6)}-{b62(100000 + i, 6)}-{b62(i % 3844, 2)}"
        lines = header.replace(real_id, mid).split("\n")
        lines[3] = f"{arrival} 0"
        if i % 100 == 0:
            lines.insert(4, f"-frozen {arrival}")
        (inp / f"{mid}-H").write_text("\n".join(lines))
        (inp / f"{mid}-D").write_text(data.replace(real_id, mid))
    for path in inp.iterdir():
        shutil.chown(path, "Debian-exim", "Debian-exim")
        os.chmod(path, 0o640)


def median_ms(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with scratch_root() as root, PrivateExim(root) as exim:
        fill_queue(exim, args.messages)
        cfg = parse_config({"daemon": {"state_dir": str(root / "state"),
                                       "run_dir": str(root / "run")},
                            "health": {"exim_spool": str(exim.spool)}})
        bpc = int(exim.exim("-bpc").stdout)

        def cold() -> bytes:
            checks = HealthChecks(cfg)
            return exposition(make_registry(checks.scrape_samples))

        checks = HealthChecks(cfg)
        registry = make_registry(checks.scrape_samples)
        text = exposition(registry).decode()
        ours = next(line for line in text.splitlines() if line.startswith("exim_queue_messages"))
        frozen = next(line for line in text.splitlines()
                      if line.startswith("exim_queue_frozen_messages"))
        cold_ms = median_ms(cold, max(3, args.runs // 3))
        warm_ms = median_ms(lambda: exposition(registry), args.runs)
        bpc_ms = median_ms(lambda: exim.exim("-bpc"), args.runs)
        bp_ms = median_ms(lambda: exim.exim("-bp"), max(3, args.runs // 3))
        print(f"queue: {args.messages + 1} messages (exim -bpc says {bpc}); {ours}; {frozen}")
        print("| variant | median ms | ratio to `exim -bpc` |")
        print("|---|---|---|")
        warm = "mailopsd scrape, warm (one listing, no per-message call, no fork)"
        for name, ms in ((warm, warm_ms),
                         ("mailopsd scrape, cold (every -H read)", cold_ms),
                         ("`exim -bpc` (one fork, count only)", bpc_ms),
                         ("`exim -bp` (one fork; frozen + ages)", bp_ms)):
            print(f"| {name} | {ms:.1f} | {ms / bpc_ms:.2f} |")


if __name__ == "__main__":
    main()
