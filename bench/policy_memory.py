"""Memory of the ban policy with 100,000 distinct client addresses being counted.

    .venv/bin/python bench/policy_memory.py [--ips 100000] [--hits 3]

Feeds Exim mainlog lines (no-rdns, auth-failed, relay-denied, built like the real ones, 15% of
clients IPv6) through BanPolicy.feed_line, all within the rules' findtime and below their
thresholds, so that every address is still being counted at the end. By default each address
gets one match under each of three rules (three counters per address, the worst case);
``--same-rule`` puts all of an address's matches under one rule. Prints the process RSS
before and after (psutil), the peak RSS, the addresses tracked and the bytes per address.
Target (issue 3): <= 80 MB RSS with 100,000 distinct IPs being counted.
"""

from __future__ import annotations

import argparse
import resource
import time

import psutil

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.core.config import parse_config


def address(i: int) -> str:
    if i % 7 == 0:  # ~15% IPv6
        return f"2001:db8:{i >> 16 & 0xffff:x}:{i & 0xffff:x}::{i % 251 + 1:x}"
    return f"{11 + (i >> 16) % 200}.{i >> 8 & 255}.{i & 255}.{i % 250 + 1}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ips", type=int, default=100_000)
    ap.add_argument("--hits", type=int, default=3, help="matches per address (below maxretry)")
    ap.add_argument("--same-rule", action="store_true",
                    help="all of an address's matches under one rule (default: one per rule, "
                         "the worst case: a counter per rule and address)")
    args = ap.parse_args()
    proc = psutil.Process()
    cfg = parse_config({"blocker": {"ignore_self": False}}).blocker
    policy = BanPolicy(cfg, IgnoreList(()))
    before = proc.memory_info().rss
    t0 = time.mktime((2026, 11, 24, 8, 0, 0, 0, 0, -1))
    start = time.perf_counter()
    lines = 0
    for h in range(args.hits):
        for i in range(args.ips):
            ip = address(i)
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0 + h * 60 + i % 300))
            kind = i % 3 if args.same_rule else (i + h) % 3
            if kind == 0:
                line = f"{ts} no host name found for IP address {ip}"
            elif kind == 1:
                line = (f"{ts} plain_server authenticator failed for (x) [{ip}]:4242: 535 "
                        "Incorrect authentication data (set_id=alice)")
            else:
                line = (f"{ts} H=(x) [{ip}]:4242 F=<a@spam.test> rejected RCPT <v@remote.test>: "
                        "relay not permitted")
            if policy.feed_line(line) is not None:
                raise SystemExit("a ban was decided: the bench must stay below the thresholds")
            lines += 1
    elapsed = time.perf_counter() - start
    after = proc.memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracked = policy.tracked()
    print(f"addresses tracked: {tracked:,} ({lines:,} lines fed in {elapsed:.2f} s, "
          f"{lines / elapsed:,.0f} lines/s)")
    print(f"RSS before: {before / 2**20:.1f} MB, after: {after / 2**20:.1f} MB, "
          f"peak: {peak / 2**20:.1f} MB (target <= 80 MB)")
    print(f"per address: {(after - before) / max(1, tracked):.0f} bytes")
    print("target met" if peak <= 80 * 2**20 and tracked >= args.ips else "TARGET MISSED")


if __name__ == "__main__":
    main()
