"""Helpers every command uses: exit codes, loading config, output tables and JSON.

Command modules import only argparse and this module at top level, so that
``mailopsd --help`` stays fast; everything heavy is imported inside the handlers. This module
imports argparse only to build parsers: ``mailopsd scan-log FILE`` runs without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    import argparse
    from typing import Any

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: the job is already running; try again later

EXIT_CODES_HELP = """exit codes:
  0   success
  1   a job (or the requested action) failed
  2   usage or configuration error
  3   status: the daemon is not running
  75  busy: the job is already running (in the daemon or another run-job)"""


def load(args: argparse.Namespace, *, log: bool = True) -> Any:
    """Load the config named by --config / $MAILOPSD_CONFIG and set up logging.

    Raises ConfigError (the caller turns it into exit 2).
    """
    from mailopsd.core.config import config_path_from, load_config

    cfg = load_config(config_path_from(args.config))
    if log:
        setup_logging(cfg, args)
    return cfg


def setup_logging(cfg: Any, args: argparse.Namespace) -> None:
    """Configure structlog from the config, with --log-level overriding it."""
    from mailopsd.core import logs

    logs.configure_from(cfg, getattr(args, "log_level", None))


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    import json

    json.dump(data, sys.stdout, indent=2, default=str, sort_keys=False)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned plain-text table on stdout."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print("\n".join(lines))  # one write: scan-log's ban list is timed


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """--json for commands whose output is a table."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Accept --config and --log-level after a command name too (``mailopsd scan-log --config
    X FILE``), on every subcommand; SUPPRESS keeps a value given before the command."""
    import argparse

    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in set(action.choices.values()):
            known = {s for a in sub._actions for s in a.option_strings}
            if "--config" not in known:
                flags = ["--config"] if "-c" in known else ["-c", "--config"]
                sub.add_argument(*flags, metavar="FILE", default=argparse.SUPPRESS,
                                 help="configuration file (as before the command)")
            if "--log-level" not in known:
                sub.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                                 default=argparse.SUPPRESS, help="override logging.level")
            add_global_options(sub)
