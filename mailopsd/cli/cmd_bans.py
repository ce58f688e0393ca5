"""``mailopsd bans``: list, add, remove and flush bans (state database and kernel together).

The command changes the kernel itself (so it works whether or not the daemon runs), then the
state database, and records each change in ``ban_changes``; a running daemon picks those up
within ``blocker.firewall.check_interval`` and updates its own view and the ban policy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, add_json_flag, load

MANUAL_RULE = "manual"


def register(sub: Any) -> None:
    """Add ``bans`` and its subcommands."""
    p = sub.add_parser("bans", help="list, add, remove or flush banned IPs",
                       description="Show and change the blocker's bans. Changes go to the "
                       "kernel and the state database at once; a running daemon follows them.")
    bsub = p.add_subparsers(dest="bans_command", metavar="ACTION", title="actions")

    q = bsub.add_parser("list", help="active bans (--all: lifted ones too)",
                        description="Active bans from the state database: IP, rule, hits, "
                        "when banned, time left, times banned, reason.")
    q.add_argument("--all", action="store_true", help="include bans already lifted")
    add_json_flag(q)
    q.set_defaults(handler=cmd_list)

    q = bsub.add_parser("add", help="ban an IP or network now",
                        description="Ban an address or CIDR from the SMTP ports now (rule "
                        "'manual'). Addresses on the ignore list are refused without --force.")
    q.add_argument("ip", metavar="IP", help="address or network, e.g. 192.0.2.7, 2001:db8::/64")
    q.add_argument("--duration", "-d", default="permanent",
                   help="how long: 90s, 10m, 2h, 7d or permanent (default: permanent)")
    q.add_argument("--reason", "-r", default="banned by hand", help="note kept with the ban")
    q.add_argument("--force", action="store_true", help="ban even an ignore-listed address")
    q.set_defaults(handler=cmd_add)

    q = bsub.add_parser("remove", help="lift bans now (prints what it removed)",
                        description="Lift the given bans (or --all) now. Exits 1 if one of the "
                        "given IPs was not banned.")
    q.add_argument("ips", metavar="IP", nargs="*", help="addresses or networks to unban")
    q.add_argument("--all", action="store_true", help="lift every ban")
    q.set_defaults(handler=cmd_remove)

    q = bsub.add_parser("flush", help="remove everything mailopsd added to the firewall",
                        description="Delete mailopsd's chains, jumps and nftables table (both "
                        "backends) and lift every ban. A running daemon re-creates its empty "
                        "chain at once: stop it first to leave no trace.")
    q.set_defaults(handler=cmd_flush)
    p.set_defaults(handler=lambda _args: (p.print_help(sys.stderr), EXIT_USAGE)[1])


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from mailopsd.blocker.store import BanStore
    from mailopsd.core.state import StateDB

    cfg = load(args)
    return cfg, BanStore(StateDB(cfg.daemon.state_dir), source="cli", journal=True)


def _left(expires: float | None, now: float) -> str:
    from mailopsd.core.config.types import format_duration

    if expires is None:
        return "permanent"
    return "due" if expires <= now else "in " + format_duration(expires - now)


def cmd_list(args: argparse.Namespace) -> int:
    """Print active (and with --all, lifted) bans."""
    import time

    from mailopsd.blocker.service import when
    from mailopsd.cli.common import print_json, print_table

    cfg, store = _setup(args)
    bans = store.active() + (store.history() if args.all else [])
    now = time.time()
    here = cfg.cluster.node_name if cfg.cluster is not None else None  # issue 16: origin
    if args.json:
        print_json([dict(b.as_dict(), origin=b.origin or here,
                         expires_in=None if b.expires is None or not b.active
                         else max(0.0, b.expires - now)) for b in bans])
        return EXIT_OK
    rows = []
    for b in bans:
        state = _left(b.expires, now) if b.active else f"lifted ({b.lifted_by})"
        banned = (when(b.banned_at) or "")[:16].replace("T", " ")
        rows.append([b.ip, b.rule, b.count, banned, state, b.times_banned, b.reason[:60]])
        if here is not None:
            rows[-1].insert(1, b.origin or here)
    headers = ["IP", "RULE", "COUNT", "BANNED", "EXPIRES", "TIMES", "REASON"]
    print_table(headers if here is None else ["IP", "ORIGIN", *headers[1:]], rows)
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    """Ban one IP now: kernel first, then the database (and the change record)."""
    import time

    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.service import duration_field, when
    from mailopsd.core.config.schema_blocker import BanTime
    from mailopsd.core.logs import get_logger
    from mailopsd.firewall import make_backend
    from mailopsd.firewall.base import canonical

    cfg, store = _setup(args)
    try:
        ip = canonical(args.ip)
        seconds = BanTime.parse(args.duration).seconds
    except ValueError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.force and IgnoreList.from_config(cfg.blocker).contains(ip):
        print(f"mailopsd: {ip} is on the ignore list (loopback, this host, blocker.ignore); "
              "use --force to ban it anyway", file=sys.stderr)
        return EXIT_USAGE
    backend = make_backend(cfg)
    backend.setup()
    backend.ban(ip, seconds)
    now = time.time()
    expires = None if seconds is None else now + seconds
    ban = store.record(ip, MANUAL_RULE, args.reason, count=0, first_seen=now, last_seen=now,
                       expires=expires, now=now)
    get_logger("bans").info("ip_banned", ip=ip, rule=MANUAL_RULE, count=0,
                            duration=duration_field(seconds), reason=args.reason,
                            expires=when(expires), times_banned=ban.times_banned, source="cli",
                            backend=backend.name)
    from mailopsd.core.config.types import format_duration

    length = "permanently" if seconds is None else f"for {format_duration(seconds)}"
    print(f"banned {ip} {length} ({backend.name})")
    _cluster(cfg, store, [("ban", ip, MANUAL_RULE, args.reason, 0, now, expires)])
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    """Lift bans now and print each one removed."""
    from mailopsd.blocker.service import duration_field
    from mailopsd.core.logs import get_logger
    from mailopsd.firewall import make_backend
    from mailopsd.firewall.base import canonical

    if bool(args.ips) == bool(args.all):
        print("mailopsd: give IP addresses or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    cfg, store = _setup(args)
    try:
        ips = [canonical(ip) for ip in args.ips]
    except ValueError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    backend = make_backend(cfg)
    missing = []
    if args.all:
        backend.restore({})  # one commit empties the chain/sets; setup stays in place
        lifted = store.lift_all("cli")
    else:
        lifted = []
        for ip in ips:
            in_kernel = backend.unban(ip)
            gone = store.lift([ip], "cli")
            lifted += gone
            if not gone and in_kernel:
                print(f"unbanned {ip} (only in the firewall, not in the state database)")
            elif not gone:
                missing.append(ip)
    log = get_logger("bans")
    for b in lifted:
        log.info("ip_unbanned", ip=b.ip, rule=b.rule, count=b.count,
                 duration=duration_field(b.duration), why="cli", source="cli")
        print(f"unbanned {b.ip} (rule {b.rule}, {b.count} hits, banned {b.times_banned}x)")
    for ip in missing:
        print(f"mailopsd: {ip} was not banned", file=sys.stderr)
    if args.all and not lifted:
        print("no active bans")
    import time

    _cluster(cfg, store, [("unban", b.ip, "", "cli", 0, time.time(), None) for b in lifted])
    return EXIT_JOB_FAILED if missing else EXIT_OK


def _cluster(cfg: Any, store: Any, decisions: list[Any]) -> None:
    """[cluster] nodes: publish what the command did to the other nodes (issue 16)."""
    if cfg.cluster is not None and decisions:
        from mailopsd.cluster.publish_now import publish

        print(publish(cfg, store.state, decisions))


def cmd_flush(args: argparse.Namespace) -> int:
    """Remove every firewall object of both backends and lift every ban."""
    from mailopsd.core.errors import FirewallError
    from mailopsd.firewall import all_backends

    cfg, store = _setup(args)
    failed = False
    for backend in all_backends(cfg):
        try:
            removed = backend.flush()
        except FirewallError as exc:
            # the configured backend must work; the other one may simply be unavailable
            if backend.name == cfg.blocker.firewall.backend:
                print(f"mailopsd: {exc}", file=sys.stderr)
                failed = True
            continue
        for what in removed:
            print(f"removed {what}")
    lifted = store.lift_all("flush")
    print(f"lifted {len(lifted)} bans in the state database")
    return EXIT_JOB_FAILED if failed else EXIT_OK
