"""``mailopsd scan-log FILE``: the blocker's rules on a log file, like fail2ban-regex."""

from __future__ import annotations

from mailopsd.cli.common import EXIT_OK, EXIT_USAGE, add_json_flag, print_json, print_table

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    import argparse
    from typing import Any

# scan-log's flags as register() adds them (store_true, default False) -> their attribute
FLAGS = {"--no-config": "no_config", "--no-ignore-self": "no_ignore_self",
         "--print-matched": "print_matched", "--print-missed": "print_missed", "--json": "json"}


def register(sub: Any) -> None:
    """Add scan-log to the subparsers."""
    p = sub.add_parser(
        "scan-log", help="dry-run the blocker's rules on a log file (like fail2ban-regex)",
        description="Read an Exim mainlog (plain, .gz, or - for stdin) with the blocker's "
        "rules and ban policy, counted on the lines' own timestamps, and print per-rule match "
        "counts and the IPs that would be banned. Changes nothing: no firewall, no state. "
        "Reads the configuration like every command (--config, $MAILOPSD_CONFIG, else "
        "/etc/mailopsd/mailopsd.toml: its rules, ignore list and policy); --no-config uses the "
        "built-in rules and defaults. The header names the config and rules used.")
    p.add_argument("file", metavar="FILE", help="log file to scan")
    p.add_argument("--no-config", action="store_true",
                   help="ignore any configuration file: built-in rules and defaults")
    p.add_argument("--no-ignore-self", action="store_true",
                   help="do not exempt loopback and this host's addresses (e.g. for a test "
                        "log whose clients were 127.0.0.1)")
    p.add_argument("--print-matched", action="store_true",
                   help="print every line a rule matched, with the rule and address")
    p.add_argument("--print-missed", action="store_true",
                   help="print every line no rule matched (near misses, lines with a rule's "
                        "keyword that its pattern rejected, are marked)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_scan_log)


def plain_args(argv: list[str]) -> argparse.Namespace | None:
    """``scan-log [FLAG...] FILE`` with only FLAGS and one file name not starting with "-":
    the namespace argparse would give, without importing argparse (scan-log is timed start-up
    included); None for anything else (help, errors, --config...), which argparse parses."""
    from types import SimpleNamespace

    if argv[:1] != ["scan-log"]:
        return None
    values = dict.fromkeys(FLAGS.values(), False)
    files = []
    for arg in argv[1:]:
        if arg in FLAGS:
            values[FLAGS[arg]] = True
        elif arg.startswith("-"):
            return None
        else:
            files.append(arg)
    if len(files) != 1:
        return None
    return SimpleNamespace(  # type: ignore[return-value]
        config=None, log_level=None, command="scan-log", file=files[0], **values,
        handler=cmd_scan_log)


def _config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """([blocker] settings, the config file used or None with --no-config)."""
    if args.no_config:  # scan-log is timed start-up included: the loader is not imported
        from mailopsd.core.config.schema_blocker import BlockerConfig

        return BlockerConfig(), None
    from mailopsd.core.config import config_path_from, load_config
    from mailopsd.core.errors import ConfigError, ConfigProblem

    path = config_path_from(args.config)
    try:
        return load_config(path).blocker, path
    except ConfigError as exc:
        if any(p.key == "(file)" for p in exc.problems):
            raise ConfigError([*exc.problems, ConfigProblem(
                "(hint)", "`mailopsd scan-log --no-config FILE` scans with the built-in "
                "rules")], exc.source) from None
        raise


def _stdin_copy() -> str:
    """stdin saved to a temporary file (scanned more than once); the caller removes it."""
    import shutil
    import sys
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="mailopsd-scan-")
    with open(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f)
    return tmp


def cmd_scan_log(args: argparse.Namespace) -> int:
    """Scan the file and print the report; exit 2 if the file or the config is unusable."""
    import os

    tmp = _stdin_copy() if args.file == "-" else None
    try:
        return _scan(args, tmp or args.file)
    finally:
        if tmp:
            os.unlink(tmp)


def _scan(args: argparse.Namespace, path: str) -> int:
    import dataclasses
    import sys

    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.rules import rule_specs
    from mailopsd.blocker.scan import scan_file
    from mailopsd.cli.scan_lines import exim_like, line_report
    from mailopsd.core.config.types import format_duration
    from mailopsd.core.errors import MailopsError

    cfg, cfg_path = _config(args)
    if args.no_ignore_self:
        cfg = dataclasses.replace(cfg, ignore_self=False)
    ignore = IgnoreList.from_config(cfg)
    specs = rule_specs(cfg)
    enabled = [n for n, s in specs.items() if s.enabled]
    shown = "stdin" if args.file == "-" else args.file
    try:
        result = scan_file(path, cfg, ignore)
        looked, sampled = exim_like(path)
        lines = (line_report(path, specs, cfg.ipv6_aggregate, args.print_matched,
                             args.print_missed)
                 if args.print_matched or args.print_missed else None)
    except MailopsError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result.path = shown
    warning = None
    if sampled == 0:
        warning = f"{shown} is empty"
    elif looked == 0:
        warning = (f"no line of {shown} looked like an Exim mainlog line (it starts "
                   f"\"YYYY-MM-DD HH:MM:SS\"; first {sampled} lines checked): is it the "
                   "mainlog (not the rejectlog, paniclog or syslog)?")
    if warning:
        print(f"mailopsd: warning: {warning}", file=sys.stderr)
    if args.json:
        data = result.to_json()
        for ban in data["bans"]:  # every JSON timestamp: ISO 8601 with its offset
            ban["first_seen"], ban["last_seen"] = _iso(ban["first_seen"]), _iso(ban["last_seen"])
        data.update(config=cfg_path, rules_used=enabled, warning=warning)
        if lines is not None:
            data.update(lines)
        print_json(data)
        return EXIT_OK
    source = (f"config {cfg_path}" if cfg_path else
              "no config (--no-config: built-in rules and defaults)")
    print(f"{source}; rules: {', '.join(enabled) or 'none enabled'}; ignore list: "
          f"{len(ignore)} networks")

    def dur(s: float | None) -> str:
        return format_duration(s)

    print(f"{result.path}: {result.lines} lines in {result.seconds:.3f} s "
          f"({result.lines_per_second:,.0f} lines/s)")
    if lines is not None:
        _print_lines(lines)
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


def _print_lines(lines: dict[str, Any]) -> None:
    from mailopsd.cli.bans_ops import printable

    if "matched_lines" in lines:
        print(f"\nmatched lines ({len(lines['matched_lines'])}):")
        for m in lines["matched_lines"]:
            print(f"  [{m['rule']} {m['ip']}] {printable(m['line'])}")
    if "missed_lines" in lines:
        print(f"\nmissed lines ({len(lines['missed_lines'])}):")
        for m in lines["missed_lines"]:
            mark = f"[near miss: {m['near_miss']}] " if m.get("near_miss") else ""
            print(f"  {mark}{printable(m['line'])}")


def _iso(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _ts(epoch: float) -> str:
    """Local "YYYY-MM-DD HH:MM:SS" (strftime's text, without its format parsing per ban)."""
    import time

    t = time.localtime(epoch)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
