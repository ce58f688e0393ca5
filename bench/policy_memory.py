"""Memory of the ban policy tracking many distinct client addresses (a botnet's scale).

    .venv/bin/python bench/policy_memory.py [--ips 1000000] [--mix 1-2|3-rules] [--daemon]
    .venv/bin/python bench/policy_memory.py --scan-log [--ips 1000000]

Feeds Exim mainlog lines (no-rdns, auth-failed, relay-denied, built like the real ones, 15% of
clients IPv6) through BanPolicy.feed_line, all within the rules' findtime and below their
thresholds, so that every address is still being counted at the end.
``--mix 1-2`` (default, issue 12): every address is seen once or twice (alternately), each hit
under one of the three rules; ``--mix 3-rules``: one match under each of three rules (three
counters per address, the old worst case). ``--daemon`` first imports what ``mailopsd run``
imports (scheduler, watchdog, structlog, firewall backends) so that the RSS is the daemon's.
``--scan-log`` writes the same lines to a file under /var/tmp and measures a real
``mailopsd scan-log`` child (peak RSS from rusage). Target (issue 12): <= 120 MB RSS with
1,000,000 distinct addresses, in the daemon and in scan-log.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

TARGET_MB = 120


def address(i: int) -> str:
    if i % 7 == 0:  # ~15% IPv6
        return f"2001:db8:{i >> 16 & 0xffff:x}:{i & 0xffff:x}::{i % 251 + 1:x}"
    return f"{11 + (i >> 16) % 200}.{i >> 8 & 255}.{i & 255}.{i % 250 + 1}"


def lines(ips: int, mix: str) -> Iterator[str]:
    t0 = time.time() - 1200  # within every default findtime, and of today
    hits = 3 if mix == "3-rules" else 2
    for h in range(hits):
        for i in range(ips):
            if mix == "1-2" and h == 1 and i % 2:
                continue  # every other address is seen once only
            ip = address(i)
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0 + h * 60 + i % 300))
            kind = (i + h) % 3
            if kind == 0:
                yield f"{ts} no host name found for IP address {ip}"
            elif kind == 1:
                yield (f"{ts} plain_server authenticator failed for (x) [{ip}]:4242: 535 "
                       "Incorrect authentication data (set_id=alice)")
            else:
                yield (f"{ts} H=(x) [{ip}]:4242 F=<a@spam.test> rejected RCPT "
                       "<v@remote.test>: relay not permitted")


def in_process(args: argparse.Namespace) -> None:
    import psutil

    if args.daemon:  # what `mailopsd run` has loaded before the first line arrives
        import apscheduler.schedulers.background  # noqa: F401
        import watchdog.observers  # noqa: F401

        import mailopsd.blocker.service
        import mailopsd.daemon.main
        import mailopsd.firewall.iptables
        import mailopsd.firewall.nftables  # noqa: F401
    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.policy import BanPolicy
    from mailopsd.core.config import parse_config

    proc = psutil.Process()
    cfg = parse_config({"blocker": {"ignore_self": False}}).blocker
    policy = BanPolicy(cfg, IgnoreList(()))
    before = proc.memory_info().rss
    start = time.perf_counter()
    n = 0
    for line in lines(args.ips, args.mix):
        if policy.feed_line(line) is not None:
            raise SystemExit("a ban was decided: the bench must stay below the thresholds")
        n += 1
    elapsed = time.perf_counter() - start
    after = proc.memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracked = policy.tracked()
    what = "daemon imports" if args.daemon else "policy only"
    print(f"[{what}, mix {args.mix}] addresses tracked: {tracked:,} ({n:,} lines in "
          f"{elapsed:.1f} s, {n / elapsed:,.0f} lines/s)")
    print(f"RSS before: {before / 2**20:.1f} MB, after: {after / 2**20:.1f} MB, "
          f"peak: {peak / 2**20:.1f} MB (target <= {TARGET_MB} MB); per address: "
          f"{(after - before) / max(1, tracked):.0f} B")
    compact = getattr(policy, "_compact", None)  # absent before issue 12's compact arrays
    if compact is not None:
        print(f"compact arrays: {compact.n:,} addresses in {compact.nbytes() / 2**20:.1f} MB")
    ok = peak <= TARGET_MB * 2**20 and tracked >= args.ips
    print("target met" if ok else "TARGET MISSED")


def scan_log(args: argparse.Namespace) -> None:
    fd, path = tempfile.mkstemp(prefix="mo-botnet-", suffix=".log", dir="/var/tmp")
    try:
        with os.fdopen(fd, "w") as f:
            n = sum(f.write(line + "\n") > 0 for line in lines(args.ips, args.mix))
        mailopsd = os.path.join(os.path.dirname(sys.executable), "mailopsd")
        helptext = subprocess.run([mailopsd, "scan-log", "--help"], capture_output=True,
                                  text=True, check=False).stdout
        extra = ["--no-config"] if "--no-config" in helptext else []
        t0 = time.perf_counter()
        child = subprocess.Popen([mailopsd, "scan-log", *extra, "--json", path],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            err = child.stderr.read().decode() if child.stderr else ""
            raise SystemExit(f"scan-log failed: {err[-2000:]}")
        peak = usage.ru_maxrss / 1024
        print(f"[scan-log, mix {args.mix}] {args.ips:,} addresses, {n:,} lines "
              f"({os.path.getsize(path) / 2**20:.0f} MB): {wall:.1f} s, peak RSS {peak:.1f} MB "
              f"(target <= {TARGET_MB} MB): {'target met' if peak <= TARGET_MB else 'MISSED'}")
    finally:
        os.unlink(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ips", type=int, default=1_000_000)
    ap.add_argument("--mix", choices=("1-2", "3-rules"), default="1-2")
    ap.add_argument("--daemon", action="store_true", help="with the daemon's imports loaded")
    ap.add_argument("--scan-log", action="store_true", help="measure a mailopsd scan-log child")
    args = ap.parse_args()
    scan_log(args) if args.scan_log else in_process(args)


if __name__ == "__main__":
    main()
