"""What keeping each ban's evidence costs the daemon per mainlog line.

    .venv/bin/python bench/evidence_cost.py [--lines 200000] [--runs 5]

The blocker service shows every line to ``Evidence.add`` (a second parse, kept lines per
address) before the ban policy counts it. This times the policy alone against evidence + policy
over a synthetic mainlog (bench/gen_mainlog.py: normal traffic with a few percent of abuse), and
reports the evidence's memory at the end. Median of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gen_mainlog import generate
from mailopsd.blocker.evidence import Evidence
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config.schema_blocker import BlockerConfig


def run(lines: list[str], with_evidence: bool) -> tuple[float, int, Evidence | None]:
    cfg = BlockerConfig()
    policy = BanPolicy(cfg, IgnoreList.from_config(cfg))
    ev = Evidence(rule_specs(cfg)) if with_evidence else None
    bans = 0
    t0 = time.perf_counter()
    for line in lines:
        if ev is not None:
            ev.add(line)
        d = policy.feed_line(line)
        if d is not None:
            bans += 1
            if ev is not None:
                ev.take(d.ip, d.rule, d.count, d.first_seen, d.last_seen)
    return time.perf_counter() - t0, bans, ev


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    lines = generate(args.lines, 1, 24.0, time.time() - 86400)
    base, with_ev = [], []
    bans = (0, 0)
    for _ in range(args.runs):
        t, b0, _ = run(lines, False)
        base.append(t)
        t, b1, _ = run(lines, True)
        with_ev.append(t)
        bans = (b0, b1)
    assert bans[0] == bans[1], "evidence must not change a decision"
    tracemalloc.start()
    keep_policy = run(lines, False)
    mem_policy = tracemalloc.get_traced_memory()[0]
    del keep_policy
    tracemalloc.stop()
    tracemalloc.start()
    _, _, ev = run(lines, True)
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    b, e = statistics.median(base), statistics.median(with_ev)
    print(f"{len(lines)} lines, {bans[0]} bans")
    print(f"policy alone          {b:.3f} s  {len(lines) / b:,.0f} lines/s")
    print(f"evidence + policy     {e:.3f} s  {len(lines) / e:,.0f} lines/s  ratio {e / b:.2f}")
    print(f"per line added        {(e - b) / len(lines) * 1e6:.2f} us")
    print(f"evidence kept for {len(ev or [])} addresses: {(mem - mem_policy) / 1e6:.1f} MB "
          f"(cap blocker.evidence MAX_ADDRESSES = 20000 addresses)")


if __name__ == "__main__":
    main()
