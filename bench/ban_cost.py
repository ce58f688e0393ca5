"""Cost of restoring 10,000 bans and of the 10,000th ban, per backend, against fail2ban's way.

Runs itself inside a throwaway network namespace (``ip netns add mobench-...``, deleted at the
end); the host's firewall is never touched and no packet is sent (the 10.x addresses only appear
in rules).

- mailopsd iptables (default layout, an ipset per family): ``restore`` = a fresh set filled by
  bulk netlink messages and swapped in, plus ONE commit per family for the chain; a ban = one
  netlink message (pyroute2).
- mailopsd iptables-rules (``iptables_set = false``): ``restore`` = chain rebuilt in ONE commit
  per family; a ban = refresh + C-level duplicate check + append + commit.
- mailopsd nftables: ``restore`` = one ``nft -f -`` transaction; a ban = one ``create element``.
- peer: fail2ban's iptables-multiport action, one ``iptables -w -I f2b-exim 1 -s IP -j REJECT``
  process per ban (Debian 12's ``iptables`` is iptables-nft), which is also how fail2ban
  restores its bans at start.

    .venv/bin/python bench/ban_cost.py [--bans 10000] [--no-peer]

Targets: restoring 10,000 bans <= 1 s; the 10,000th ban <= 10 ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time

ENV = "MAILOPSD_BENCH_NETNS"
TARGET_RESTORE_S = 1.0
TARGET_BAN_MS = 10.0


# -- helpers shared with ban_latency.py ---------------------------------------------------------
def in_throwaway_netns() -> int | None:
    """In the parent: run this script again inside a new namespace, return its exit code.

    In the child (already inside): return None, and the caller runs the benchmark.
    """
    if os.environ.get(ENV):
        return None
    if os.geteuid() != 0:
        sys.exit("benchmarks change firewall rules: run as root (inside a namespace they make)")
    name = f"mobench-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, **{ENV: name})
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, *sys.argv],
                              env=env, check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def ip_of(i: int) -> str:
    """The i-th address of a block used only in rules inside the namespace (no traffic)."""
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values_ms: list[float]) -> str:
    """p50 / p90 / p99 / max in ms."""
    return (f"p50 {statistics.median(values_ms):7.2f}  p90 {pct(values_ms, 90):7.2f}  "
            f"p99 {pct(values_ms, 99):7.2f}  max {max(values_ms):7.2f} ms")


# -- the benchmark ------------------------------------------------------------------------------
def ours(name: str, n: int, samples: int = 30) -> tuple[float, list[float], list[float]]:
    """(median restore s, ban ms at size n, unban ms at size n) for a mailopsd backend."""
    from mailopsd.core import logs
    from mailopsd.core.config.schema_firewall import FirewallConfig
    from mailopsd.firewall.base import FirewallBackend
    from mailopsd.firewall.iptables import IptablesBackend
    from mailopsd.firewall.nftables import NftablesBackend

    logs.configure("json", "warning", stream=sys.stderr)
    if name == "nftables":
        b: FirewallBackend = NftablesBackend(FirewallConfig(backend="nftables"))
    else:
        b = IptablesBackend(FirewallConfig(backend="iptables",
                                           iptables_set=name != "iptables-rules"))
    full = {ip_of(i): 3600.0 for i in range(n)}
    try:
        restores = []
        for _ in range(3):
            t = time.perf_counter()
            b.restore(full)
            restores.append(time.perf_counter() - t)
        if len(b.list()) != n:
            raise SystemExit(f"{name}: {len(b.list())} bans in the kernel, expected {n}")
        b.restore({ip_of(i): 3600.0 for i in range(n - 1)})
        bans, unbans = [], []
        for k in range(samples):
            ip = f"10.200.0.{k}"
            t = time.perf_counter()
            b.ban(ip, 3600.0)  # the n-th ban
            t2 = time.perf_counter()
            b.unban(ip)
            bans.append((t2 - t) * 1000)
            unbans.append((time.perf_counter() - t2) * 1000)
    finally:
        b.flush()
    return statistics.median(restores), bans, unbans


def peer(n: int) -> tuple[float, list[float]]:
    """(total s for n bans, the last 30 bans' ms) with one iptables process per ban."""
    def ipt(*args: str) -> None:
        subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)

    ipt("-N", "f2b-exim")
    ipt("-I", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "-j", "f2b-exim")
    times = []
    try:
        start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            ipt("-I", "f2b-exim", "1", "-s", ip_of(i), "-j", "REJECT", "--reject-with",
                "icmp-port-unreachable")
            times.append((time.perf_counter() - t) * 1000)
        total = time.perf_counter() - start
    finally:
        ipt("-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "-j", "f2b-exim")
        ipt("-F", "f2b-exim")
        ipt("-X", "f2b-exim")
    return total, times[-30:]


def main() -> int:
    """Parse arguments and print the results with their ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bans", type=int, default=10_000)
    ap.add_argument("--no-peer", action="store_true", help="skip fail2ban's way (~25 s)")
    args = ap.parse_args()
    rc = in_throwaway_netns()
    if rc is not None:
        return rc
    n = args.bans
    results = {name: ours(name, n) for name in ("iptables", "iptables-rules", "nftables")}
    print(f"{n} bans, inside a throwaway network namespace")
    for name, (restore, bans, unbans) in results.items():
        ban50 = statistics.median(bans)
        print(f"  mailopsd {name:14s} restore {restore * 1000:8.1f} ms "
              f"({'OK' if restore <= TARGET_RESTORE_S else 'MISSED'} <= 1 s)   "
              f"ban #{n}: {summary(bans)} "
              f"({'OK' if ban50 <= TARGET_BAN_MS else 'MISSED'} <= 10 ms)   "
              f"unban p50 {statistics.median(unbans):.2f} ms")
    if not args.no_peer:
        total, last = peer(n)
        print(f"  peer: one iptables(-nft) process per ban (fail2ban's action): {n} bans "
              f"{total:.1f} s; ban #{n}: {summary(last)}")
        for name, (restore, bans, _u) in results.items():
            print(f"  peer/mailopsd {name}: restore {total / restore:.0f}x, ban #{n} "
                  f"{statistics.median(last) / statistics.median(bans):.2f}x "
                  "(>1: mailopsd faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
