"""``mailopsd bans``: list, show, add, remove and flush bans (state database and kernel together).

Every change goes to the state database first and then to the kernel, under the bans lock the
daemon shares (see bans_ops.py): it works whether or not the daemon runs, and a running daemon
never puts back what was removed. Each change is recorded in ``ban_changes`` (the daemon follows
them) and sent as an event with ``SOURCE=cli`` to the journal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, add_json_flag, load

MANUAL_RULE = "manual"


def register(sub: Any) -> None:
    """Add ``bans`` and its subcommands."""
    p = sub.add_parser("bans", help="list, show, add, remove or flush banned IPs",
                       description="Show and change the blocker's bans. Changes go to the "
                       "state database, then the kernel; a running daemon follows them and "
                       "never puts back what was removed. Each change is an event with "
                       "SOURCE=cli in the journal.")
    bsub = p.add_subparsers(dest="bans_command", metavar="ACTION", title="actions")

    q = bsub.add_parser("list", help="active bans (--all: lifted ones too)",
                        description="Active bans from the state database: IP, rule, hits, "
                        "when banned, time left, times banned, reason; KERNEL says whether "
                        "the firewall holds each one (rows marked '!' disagree, including "
                        "addresses only the kernel holds).")
    q.add_argument("--all", action="store_true", help="include bans already lifted")
    q.add_argument("--no-kernel", action="store_true", help="do not read the firewall")
    add_json_flag(q)
    q.set_defaults(handler=cmd_list)

    q = bsub.add_parser("show", help="why was ADDR banned: the ban, its evidence, history",
                        description="The ban of an address (rule, since, until, by whom), "
                        "the log lines that decided it, its earlier bans, whether the kernel "
                        "holds it, and any banned network that contains it. Exits 1 if the "
                        "address was never banned.")
    q.add_argument("ip", metavar="ADDR", help="address or network")
    q.add_argument("--no-kernel", action="store_true", help="do not read the firewall")
    add_json_flag(q)
    q.set_defaults(handler=cmd_show)

    q = bsub.add_parser("add", help="ban an IP or network now",
                        description="Ban an address or CIDR from the SMTP ports now (rule "
                        "'manual'). Addresses on the ignore list are refused without --force; "
                        "an address already banned is refused (exit 1, showing the ban) "
                        "without --update.")
    q.add_argument("ip", metavar="IP", help="address or network, e.g. 192.0.2.7, 2001:db8::/64")
    q.add_argument("--duration", "-d", default="permanent",
                   help="how long: 90s, 10m, 2h, 7d or permanent (default: permanent)")
    q.add_argument("--reason", "-r", default="banned by hand", help="note kept with the ban")
    q.add_argument("--force", action="store_true", help="ban even an ignore-listed address")
    q.add_argument("--update", action="store_true",
                   help="replace an existing ban of the address by this manual one")
    add_json_flag(q)
    q.set_defaults(handler=cmd_add)

    q = bsub.add_parser("remove", help="lift bans now (prints what it removed)",
                        description="Lift the given bans (or --all) now. Exits 1 if one of the "
                        "given IPs was not banned (naming the banned network that holds it, "
                        "if one does).")
    q.add_argument("ips", metavar="IP", nargs="*", help="addresses or networks to unban")
    q.add_argument("--all", action="store_true", help="lift every ban")
    add_json_flag(q)
    q.set_defaults(handler=cmd_remove)

    q = bsub.add_parser("flush", help="remove everything mailopsd added to the firewall",
                        description="Lift every ban in the state database, then delete "
                        "mailopsd's chains, jumps, ipsets and nftables table (both backends). "
                        "A running "
                        "daemon re-creates its empty chain at once and bans new offenders as "
                        "usual: stop it first to leave no trace.")
    add_json_flag(q)
    q.set_defaults(handler=cmd_flush)
    p.set_defaults(handler=lambda _args: (p.print_help(sys.stderr), EXIT_USAGE)[1])


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from mailopsd.blocker.store import BanStore
    from mailopsd.core.state import StateDB

    cfg = load(args)
    return cfg, BanStore(StateDB(cfg.daemon.state_dir), source="cli", journal=True)


def _lock(cfg: Any) -> Any:
    from mailopsd.blocker.banlock import BanLock

    return BanLock(cfg.daemon.run_dir)


def _left(expires: float | None, now: float) -> str:
    from mailopsd.core.config.types import format_duration

    if expires is None:
        return "permanent"
    return "due" if expires <= now else "in " + format_duration(expires - now)


def _kernel(cfg: Any, skip: bool = False) -> tuple[set[str] | None, str | None]:
    """What the configured backend holds now, or (None, why not)."""
    from mailopsd.core.errors import MailopsError
    from mailopsd.firewall import make_backend

    if skip:
        return None, "--no-kernel"
    try:
        return make_backend(cfg).list(), None
    except (MailopsError, OSError) as exc:
        return None, str(exc)


def _daemon_note(cfg: Any) -> str:
    from mailopsd.cli.bans_ops import daemon_pid

    pid = daemon_pid(cfg)
    if pid is None:
        return "the daemon is not running"
    return (f"the daemon (pid {pid}) runs and takes this change over within "
            f"{cfg.blocker.firewall.check_interval:g}s, before its next kernel check")


def _done(args: argparse.Namespace, cfg: Any, data: dict[str, Any], lines: list[str],
          errors: list[str], code: int) -> int:
    """Print what a change did (text or --json) and return ``code``."""
    from mailopsd.cli.bans_ops import daemon_pid
    from mailopsd.cli.common import print_json

    if args.json:
        print_json({**data, "daemon_pid": daemon_pid(cfg), "errors": errors})
    else:
        for line in lines:
            print(line)
        print(f"({_daemon_note(cfg)})")
    for err in errors:
        print(f"mailopsd: {err}", file=sys.stderr)
    return code


def cmd_list(args: argparse.Namespace) -> int:
    """Print active (and with --all, lifted) bans, marking kernel/state disagreement."""
    import time

    from mailopsd.cli.bans_ops import ban_json
    from mailopsd.cli.common import print_json, print_table
    from mailopsd.firewall.base import is_v6

    cfg, store = _setup(args)
    active = store.active()
    bans = active + (store.history() if args.all else [])
    kernel, why = _kernel(cfg, args.no_kernel)
    now = time.time()

    def expected(ip: str) -> bool:  # IPv6 bans are kept, not applied, while ipv6 is off
        return cfg.blocker.firewall.ipv6 or not is_v6(ip)

    in_state = {b.ip for b in active if expected(b.ip)}
    kernel_only = sorted(kernel - in_state) if kernel is not None else []
    here = cfg.cluster.node_name if cfg.cluster is not None else None  # the node that decided
    if args.json:
        rows = []
        for b in bans:
            held = None if kernel is None else b.ip in kernel
            rows.append(dict(ban_json(b), origin=b.origin or here, in_kernel=held,
                             agrees=None if held is None else held == (b.active
                                                                       and expected(b.ip)),
                             expires_in=None if b.expires is None or not b.active
                             else max(0.0, b.expires - now)))
        rows += [{"ip": ip, "active": None, "in_state": False, "in_kernel": True,
                  "agrees": False} for ip in kernel_only]
        print_json(rows)
        return EXIT_OK
    table = []
    for b in bans:
        state = _left(b.expires, now) if b.active else f"lifted ({b.lifted_by})"
        banned = (ban_json(b)["banned_at"] or "")[:16].replace("T", " ")
        if kernel is None:
            k = "?"
        else:
            held = b.ip in kernel
            k = ("yes" if held else "no") + ("" if held == (b.active and expected(b.ip))
                                             else " !")
        table.append([b.ip, b.rule, b.count, banned, state, b.times_banned, k, b.reason[:60]])
        if here is not None:
            table[-1].insert(1, b.origin or here)
    table += [[ip, *(["-"] if here is not None else []), "-", "-", "-", "not in state", "-",
               "yes !", "only in the kernel"] for ip in kernel_only]
    headers = ["IP", "RULE", "COUNT", "BANNED", "EXPIRES", "TIMES", "KERNEL", "REASON"]
    print_table(headers if here is None else ["IP", "ORIGIN", *headers[1:]], table)
    if kernel is None:
        print(f"(kernel not checked: {why})")
    elif any(str(r[-2]).endswith("!") for r in table):
        print("(!: the kernel and the state database disagree; the daemon's kernel check puts "
              "missing bans back; `mailopsd bans remove IP` clears a kernel-only one)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Why an address is (or was) banned."""
    from mailopsd.cli.bans_show import show

    cfg, store = _setup(args)
    return show(args, cfg, store, _kernel(cfg, args.no_kernel))


def cmd_add(args: argparse.Namespace) -> int:
    """Ban one IP now: the database (and its change record) first, then the kernel."""
    import time

    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.service import duration_field
    from mailopsd.cli.bans_ops import ban_json, emit, iso, who
    from mailopsd.core.config.schema_blocker import BanTime
    from mailopsd.core.config.types import format_duration
    from mailopsd.core.errors import FirewallError
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
    current = store.get(ip)
    holders = store.covering(ip)
    if not args.update and ((current is not None and current.active) or holders):
        held = current if current is not None and current.active else holders[0]
        msg = (f"{ip} is already banned" if held.ip == ip
               else f"{ip} is already banned inside network {held.ip}")
        until = "permanently" if held.expires is None else f"until {iso(held.expires)}"
        print(f"mailopsd: {msg}: rule {held.rule}, since {iso(held.banned_at)}, {until} "
              f"({held.reason}); use --update to replace it by this manual ban",
              file=sys.stderr)
        if args.json:
            from mailopsd.cli.common import print_json

            print_json({"action": "add", "ip": ip, "done": False, "already_banned":
                        ban_json(held)})
        return EXIT_JOB_FAILED
    backend = make_backend(cfg)
    by = who()
    errors: list[str] = []
    with _lock(cfg).held():
        now = time.time()
        expires = None if seconds is None else now + seconds
        ban = store.record(ip, MANUAL_RULE, args.reason, count=0, first_seen=now,
                           last_seen=now, expires=expires, now=now, by=by)
        try:
            backend.setup()
            backend.ban(ip, seconds)
        except FirewallError as exc:
            errors.append(f"{ip} is banned in the state database but the kernel refused it "
                          f"({exc}); the daemon's kernel check retries it")
    replaced = current is not None and current.active
    emit(cfg, "ip_banned", [ip], rule=MANUAL_RULE, count=0, duration=duration_field(seconds),
         reason=args.reason, expires=iso(expires), times_banned=ban.times_banned, by=by,
         backend=backend.name, replaced=current.rule if replaced and current else None)
    length = "permanently" if seconds is None else f"for {format_duration(seconds)}"
    line = f"banned {ip} {length} ({backend.name})"
    if replaced and current is not None:
        line += f", replacing its {current.rule} ban"
    shared = _cluster(cfg, store, [("ban", ip, MANUAL_RULE, args.reason, 0, now, expires)])
    return _done(args, cfg, {"action": "add", "ip": ip, "done": True, "ban": ban_json(ban),
                             "replaced": ban_json(current) if replaced else None,
                             "cluster": shared or None},
                 [line, *([shared] if shared else [])], errors,
                 EXIT_JOB_FAILED if errors else EXIT_OK)


def cmd_remove(args: argparse.Namespace) -> int:
    """Lift bans now (database first, then kernel) and print each one removed."""
    import time

    from mailopsd.cli.bans_ops import ban_json, emit, who
    from mailopsd.core.errors import FirewallError
    from mailopsd.firewall import make_backend
    from mailopsd.firewall.base import canonical

    if bool(args.ips) == bool(args.all):
        print("mailopsd: give IP addresses or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    cfg, store = _setup(args)
    try:
        ips = list(dict.fromkeys(canonical(ip) for ip in args.ips))
    except ValueError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    backend = make_backend(cfg)
    errors: list[str] = []
    kernel_only: list[str] = []
    missing: dict[str, list[str]] = {}
    with _lock(cfg).held():
        if args.all:
            lifted = store.lift_all("cli")
            try:
                backend.restore({})  # one commit empties the chain/sets; setup stays
            except FirewallError as exc:
                errors.append(f"the kernel still holds the bans: {exc}")
        else:
            lifted = store.lift(ips, "cli")
            gone = {b.ip for b in lifted}
            for ip in ips:
                try:
                    in_kernel = backend.unban(ip)
                except FirewallError as exc:
                    errors.append(f"{ip}: lifted in the state database, but the kernel "
                                  f"refused: {exc}")
                    continue
                if ip not in gone and in_kernel:
                    kernel_only.append(ip)
                elif ip not in gone:
                    missing[ip] = [b.ip for b in store.covering(ip)]
    by = who()
    for b in lifted:
        emit(cfg, "ip_unbanned", [b.ip], rule=b.rule, count=b.count, why="cli", by=by)
    for ip in kernel_only:
        emit(cfg, "ip_unbanned", [ip], rule=None, why="cli", by=by, only_in_kernel=True)
    lines = [f"unbanned {b.ip} (rule {b.rule}, {b.count} hits, banned {b.times_banned}x)"
             for b in lifted]
    lines += [f"unbanned {ip} (only in the firewall, not in the state database)"
              for ip in kernel_only]
    if args.all and not lifted:
        lines.append("no active bans")
    for ip, nets in missing.items():
        errors.append(f"{ip} is not banned itself; it is inside the banned network "
                      f"{', '.join(nets)} (remove that network to unban it)" if nets
                      else f"{ip} was not banned")
    shared = _cluster(cfg, store, [("unban", b.ip, "", "cli", 0, time.time(), None)
                                   for b in lifted])
    if shared:
        lines.append(shared)
    data = {"action": "remove", "lifted": [ban_json(b) for b in lifted],
            "kernel_only": kernel_only,
            "not_banned": [{"ip": ip, "inside": nets} for ip, nets in missing.items()],
            "cluster": shared or None}
    return _done(args, cfg, data, lines, errors, EXIT_JOB_FAILED if errors else EXIT_OK)


def _cluster(cfg: Any, store: Any, decisions: list[Any]) -> str:
    """[cluster] nodes: publish what the command did to the other nodes; a sentence, or ""."""
    if cfg.cluster is None or not decisions:
        return ""
    from mailopsd.cluster.publish_now import publish

    return publish(cfg, store.state, decisions)


def cmd_flush(args: argparse.Namespace) -> int:
    """Lift every ban in the database, then remove every firewall object of both backends."""
    from mailopsd.cli.bans_ops import ban_json, emit, who
    from mailopsd.core.errors import FirewallError
    from mailopsd.firewall import all_backends

    cfg, store = _setup(args)
    errors: list[str] = []
    removed: list[str] = []
    with _lock(cfg).held():
        lifted = store.lift_all("flush")
        for backend in all_backends(cfg):
            try:
                removed += backend.flush()
            except FirewallError as exc:
                # the configured backend must work; the other one may simply be unavailable
                if backend.name == cfg.blocker.firewall.backend:
                    errors.append(str(exc))
    emit(cfg, "bans_flushed", [b.ip for b in lifted], count=len(lifted), by=who(),
         removed=removed)
    lines = [f"removed {what}" for what in removed]
    lines.append(f"lifted {len(lifted)} bans in the state database")
    data = {"action": "flush", "lifted": [ban_json(b) for b in lifted], "removed": removed}
    return _done(args, cfg, data, lines, errors, EXIT_JOB_FAILED if errors else EXIT_OK)
