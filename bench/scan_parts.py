"""Where scan-log's time goes after start-up, in one process: read, parse, count (issue 12).

    .venv/bin/python bench/scan_parts.py [LOG] [--runs 7]

Times ``mailopsd scan-log``'s own steps on a log (default: the bench's 200k-line log, made by
``bench/scan_vs_fail2ban.py --keep /var/tmp/i12bench``) with the built-in rules: reading the
blocks, parsing them (the C shortcut where built, the grammar for the rest, minute epochs
included) and counting the events into the ban policy. Prints min / median per step, then how
many events belong to addresses that reach a threshold (what skipping the policy for the
others could save at most), and the C scan alone over the whole file under each line search
this CPU has (the portable one, AVX2 where there is one).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from mailopsd.blocker import fastpath, scan
from mailopsd.blocker import parse as parse_mod
from mailopsd.blocker.batch import count_events
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanDecision, BanPolicy
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log", nargs="?", default="/var/tmp/i12bench/mainlog")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    cfg = parse_config({}).blocker
    steps: dict[str, list[float]] = {"read": [], "parse": [], "count": [], "total": []}
    events: list[scan.Event] = []
    for run in range(args.runs):
        _fresh_time_caches()  # every run pays the minute epochs, as a fresh process does
        policy = BanPolicy(cfg, IgnoreList(()))
        keys = list(policy.parser.keywords or ())
        parse = scan.block_parser(keys, policy.parser)
        bans: list[BanDecision] = []
        t_read = t_parse = t_count = 0.0
        start = time.perf_counter()
        with open(args.log, "rb") as f:
            it = scan.blocks(f, args.log)
            while True:
                t0 = time.perf_counter()
                body = next(it, None)
                t1 = time.perf_counter()
                if body is None:
                    break
                got, _lines = parse(body)
                t2 = time.perf_counter()
                count_events(policy, got, bans)
                t3 = time.perf_counter()
                t_read, t_parse, t_count = t_read + t1 - t0, t_parse + t2 - t1, t_count + t3 - t2
                if run == 0:
                    events.extend(got)
        for k, took in zip(steps, (t_read, t_parse, t_count, time.perf_counter() - start),
                           strict=True):
            steps[k].append(took)
    for k, v in steps.items():
        print(f"{k:6s} min {min(v) * 1000:6.1f} ms  median {statistics.median(v) * 1000:6.1f} ms")
    per = Counter((rule, ip) for rule, ip, _ in events if ip is not None)
    maxretry = {n: s.maxretry for n, s in BanPolicy(cfg, IgnoreList(())).rules.items()}
    heavy = {ip for (rule, ip), n in per.items() if rule in maxretry and n >= maxretry[rule]}
    heavy |= {ip for rule, ip, _ in events if rule == AUTHENTICATED and ip is not None}
    print(f"{len(events)} events, {len(bans)} bans; addresses reaching a threshold or logging "
          f"in: {len(heavy)}, holding {sum(1 for _, ip, _ in events if ip in heavy)} events")
    c_scan_alone(args.log, args.runs, BanPolicy(cfg, IgnoreList(())))


def _fresh_time_caches() -> None:
    parse_mod._LOCAL.clear()
    parse_mod._MINUTES.clear()
    parse_mod._HOURS.clear()


def c_scan_alone(log: str, runs: int, policy: BanPolicy) -> None:
    """The C scan of the whole file as one block (no read, no grammar, no count), under each
    line search this CPU has, minute and hour caches fresh each run: min / median."""
    if fastpath._fastscan is None:
        print("C scan: the extension is not built")
        return
    with open(log, "rb") as f:
        data = f.read()
    keys = list(policy.parser.keywords or ())
    bkeys = tuple(k.encode() for k in keys)
    offsets = tuple(fastpath.PAIRS.get(k, 0) for k in keys)
    forms = tuple(fastpath._CODES.get(k, 0) for k in keys)
    best = fastpath._fastscan.use_search("generic")
    fastpath._fastscan.use_search(best)
    for name in dict.fromkeys(("generic", best)):
        fastpath._fastscan.use_search(name)
        took = []
        for _ in range(runs):
            _fresh_time_caches()
            t0 = time.perf_counter()
            fastpath._fastscan.scan(data, bkeys, offsets, forms, fastpath._NAMES,
                                    fastpath._minute_base, parse_mod.plain_hour, None)
            took.append(time.perf_counter() - t0)
        print(f"C scan alone, {name} search: min {min(took) * 1000:6.1f} ms  median "
              f"{statistics.median(took) * 1000:6.1f} ms")
    fastpath._fastscan.use_search(best)


if __name__ == "__main__":
    main()
