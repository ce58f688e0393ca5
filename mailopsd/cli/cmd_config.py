"""Config commands: ``config show [--non-default] [--json]``, and check-config's work."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add ``mailopsd config show``."""
    p = sub.add_parser("config", help="print the effective configuration",
                       description="Commands about the configuration. `mailopsd check-config` "
                       "validates it.")
    csub = p.add_subparsers(dest="config_command", metavar="COMMAND", title="commands")
    show = csub.add_parser(
        "show", help="print the effective configuration (main file + drop-ins + defaults)",
        description="Print the configuration in force: the main file, merged with its "
        "mailopsd.d/*.toml drop-ins, over the built-in defaults (like `postconf` / `exim "
        "-bP`). The output is valid TOML. With --non-default only the keys whose value differs "
        "from the default (like `postconf -n`).")
    show.add_argument("--non-default", action="store_true",
                      help="only what differs from the built-in defaults")
    show.add_argument("--json", action="store_true",
                      help="JSON (durations in seconds, unset keys as null)")
    show.set_defaults(handler=cmd_config_show)
    p.set_defaults(handler=lambda _a: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective (or only the non-default) configuration."""
    from mailopsd.cli.common import print_json
    from mailopsd.core.config import config_path_from
    from mailopsd.core.config.dump import non_default, show_data, to_toml
    from mailopsd.core.config.loader import load_config_sources

    cfg, sources = load_config_sources(config_path_from(args.config))
    if args.json:
        print_json(non_default(cfg, json=True) if args.non_default
                   else show_data(cfg, json=True))
        return EXIT_OK
    data = non_default(cfg) if args.non_default else show_data(cfg)
    what = "settings that differ from the defaults" if args.non_default else "configuration"
    print(f"# effective {what}, from: {', '.join(sources.files)}")
    sys.stdout.write(to_toml(data))
    return EXIT_OK


def check_config(args: argparse.Namespace) -> int:
    """check-config: the file(s) first (errors raise ConfigError -> exit 2), then the machine.

    Returns 0, or 2 when --strict and the machine has problems.
    """
    import os

    from mailopsd.core.config import config_path_from
    from mailopsd.core.config.environment import check_environment
    from mailopsd.core.config.loader import load_config_sources

    path = config_path_from(args.config)
    cfg, sources = load_config_sources(path)
    dropins = sources.files[1:]
    findings = [str(f) for f in check_environment(cfg)]
    if os.geteuid() != 0:
        findings.append("(environment): not running as root, so home directories and "
                        "root-only files could not all be checked: run as root")
    verdict = ("the files are valid, the machine is not ready (errors below)"
               if findings and args.strict else "configuration is valid")
    print(f"{path}: {verdict}" + (f" (with drop-ins: {', '.join(dropins)})" if dropins else ""))
    level = "error" if args.strict else "warning"
    for f in findings:
        print(f"{level}: {f}", file=sys.stderr)
    if findings:
        tail = ("(--strict: treated as errors)" if args.strict
                else "(the daemon would start; --strict makes these errors)")
        print(f"{len(findings)} problem(s) with the machine {tail}", file=sys.stderr)
    return EXIT_USAGE if findings and args.strict else EXIT_OK
