"""``mailopsd bans show ADDR``: why an address is (or was) banned.

The ban (rule, since, until, by whom, reason), the evidence (the log lines that decided it, kept
when the ban was decided: at most the rule's maxretry), the address's earlier bans, any banned
network holding it, and whether the kernel holds it now. Exit 0 if it was ever banned (or a
banned network holds it), 1 if not, 2 for a bad address.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mailopsd.cli.bans_ops import ban_json, iso, printable
from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, print_json


def _until(expires: float | None) -> str:
    return "permanent" if expires is None else str(iso(expires))


def show(args: argparse.Namespace, cfg: Any, store: Any,
         kernel: tuple[set[str] | None, str | None]) -> int:
    """Print the story of ``args.ip``; see the module docstring."""
    from mailopsd.firewall.base import canonical

    try:
        ip = canonical(args.ip)
    except ValueError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    held, why = kernel
    ban = store.get(ip)
    records = store.records(ip)
    networks = store.covering(ip)
    current = records[0] if records and ban is not None and ban.active \
        and records[0].lifted_at is None else None
    earlier = [r for r in records if r is not current]
    data: dict[str, Any] = {
        "ip": ip,
        "banned": bool(ban and ban.active),
        "ban": None if ban is None else ban_json(ban),
        "by": current.by if current else (ban.source if ban else None),
        "evidence": list(current.evidence) if current else [],
        "earlier_bans": [ban_json(r) for r in earlier],
        "inside_banned_networks": [ban_json(n) for n in networks],
        "in_kernel": None if held is None else ip in held,
        "kernel_error": why,
        "checked_at": iso(time.time()),
    }
    if args.json:
        print_json(data)
    else:
        _print(data, ban, current, earlier, networks)
    return EXIT_OK if ban is not None or records or networks else EXIT_JOB_FAILED


def _print(data: dict[str, Any], ban: Any, current: Any, earlier: list[Any],
           networks: list[Any]) -> None:
    ip = data["ip"]
    if ban is None and not earlier:
        print(f"{ip}: never banned (no record in the state database)")
    elif ban is not None and ban.active:
        print(f"{ip}: banned by rule {ban.rule}, since {iso(ban.banned_at)}, until "
              f"{_until(ban.expires)}")
        print(f"  by: {data['by']} ({ban.source}); times banned: {ban.times_banned}")
        print(f"  reason: {ban.reason or '-'}")
    elif ban is not None:
        print(f"{ip}: not banned now; last ban by rule {ban.rule} from {iso(ban.banned_at)}, "
              f"lifted {iso(ban.lifted_at)} ({ban.lifted_by})")
    if data["in_kernel"] is None:
        print(f"  kernel: not checked ({data['kernel_error']})")
    else:
        active = bool(ban is not None and ban.active)
        state = "holds it" if data["in_kernel"] else "does not hold it"
        warn = "" if data["in_kernel"] == active else "  (! disagrees with the state database)"
        print(f"  kernel: {state}{warn}")
    for net in networks:
        print(f"  inside banned network {net.ip} (rule {net.rule}, until {_until(net.expires)})")
    if current is not None:
        if current.evidence:
            print(f"  evidence ({len(current.evidence)} lines that decided the ban):")
            for line in current.evidence:
                print(f"    {printable(line)}")
        else:
            print("  evidence: none kept (a manual ban, a flood sample, or hits counted "
                  "before a restart)")
    if earlier:
        print(f"  earlier bans ({len(earlier)}):")
        for r in earlier:
            print(f"    {iso(r.banned_at)}  {r.rule}  by {r.by}  until {_until(r.expires)}  "
                  f"ended {iso(r.lifted_at) or '-'} ({r.lifted_by or '-'})  {r.reason}")
            for line in r.evidence:
                print(f"      {printable(line)}")
