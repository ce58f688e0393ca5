"""``mailopsd scan-log FILE``: the blocker's rules on a log file, like fail2ban-regex."""

from __future__ import annotations

import argparse
from typing import Any

from mailopsd.cli.common import EXIT_OK, EXIT_USAGE, add_json_flag, print_json, print_table


def register(sub: Any) -> None:
    """Add scan-log to the subparsers."""
    p = sub.add_parser(
        "scan-log", help="dry-run the blocker's rules on a log file (like fail2ban-regex)",
        description="Read an Exim mainlog (plain, .gz, or - for stdin) with the blocker's "
        "rules and ban policy, counted on the lines' own timestamps, and print per-rule match "
        "counts and the IPs that would be banned. Changes nothing: no firewall, no state. "
        "Works without a configuration file (built-in rules and defaults); with --config or "
        "$MAILOPSD_CONFIG it uses that file's [blocker] settings and custom rules.")
    p.add_argument("file", metavar="FILE", help="log file to scan")
    p.add_argument("--no-ignore-self", action="store_true",
                   help="do not exempt loopback and this host's addresses (e.g. for a test "
                        "log whose clients were 127.0.0.1)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_scan_log)


def _config(args: argparse.Namespace) -> Any:
    """[blocker] from --config / $MAILOPSD_CONFIG if either is given, else the defaults."""
    import os

    from mailopsd.core.config.schema_blocker import BlockerConfig

    if args.config or os.environ.get("MAILOPSD_CONFIG"):
        from mailopsd.core.config import config_path_from, load_config

        return load_config(config_path_from(args.config)).blocker
    return BlockerConfig()


def cmd_scan_log(args: argparse.Namespace) -> int:
    """Scan the file and print the report; exit 2 if the file or the config is unusable."""
    import dataclasses
    import sys

    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.scan import scan_file
    from mailopsd.core.config.types import format_duration
    from mailopsd.core.errors import MailopsError

    cfg = _config(args)
    if args.no_ignore_self:
        cfg = dataclasses.replace(cfg, ignore_self=False)
    try:
        result = scan_file(args.file, cfg, IgnoreList.from_config(cfg))
    except MailopsError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print_json(result.to_json())
        return EXIT_OK

    def dur(s: float | None) -> str:
        return format_duration(s)

    print(f"{result.path}: {result.lines} lines in {result.seconds:.3f} s "
          f"({result.lines_per_second:,.0f} lines/s)")
    print()
    rows = [(name, "yes" if r["enabled"] else "no", r["maxretry"], dur(r["findtime"]),
             dur(r["bantime"]), r["matches"], r["ignored"], r["unmatched"], r["bans"])
            for name, r in result.rules.items()]
    print_table(("rule", "enabled", "maxretry", "findtime", "bantime", "matches", "ignored",
                 "unmatched", "bans"), rows)
    print(f"\nauthenticated logins: {result.authenticated} (no-rdns matches exempted: "
          f"{result.exempted})")
    print("ignored: bans the ignore list prevented; unmatched: lines with the rule's keyword "
          "that its pattern rejected (a changed log format, or hostile text)")
    if not result.bans:
        print("\nno IP would be banned")
        return EXIT_OK
    print(f"\n{len(result.bans)} ban(s) would be made:")
    print_table(("ip", "rule", "count", "duration", "last_seen"),
                [(b.ip, b.rule, b.count, dur(b.duration), _ts(b.last_seen))
                 for b in result.bans])
    return EXIT_OK


def _ts(epoch: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
