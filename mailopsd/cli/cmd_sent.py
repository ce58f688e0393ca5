"""copy-to-Sent commands: sent-fixup."""

from __future__ import annotations

import argparse
from typing import Any

from mailopsd.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_json_flag,
    load,
    print_json,
    print_table,
)

ORDER = ("fixed", "pending", "already", "ignored", "gone", "unsafe", "failed")


def register(sub: Any) -> None:
    """Add the copy-to-Sent commands to the subparsers."""
    p = sub.add_parser(
        "sent-fixup", help="fix the server-made copies waiting in users' Sent folders, once",
        description="Process the copy-to-Sent backlog once: read the Exim filter's recipients "
        "log (sent.recipients_log) up to its end, then add the missing Bcc: header to, and "
        "mark \\Seen, every server-made copy in the users' Sent folders (new/ and cur/, as far "
        "back as sent.recipients_keep). Copies without an Exim id (a client's IMAP APPEND) are "
        "left alone. Exits 75 while the daemon's sent-fixer service (or another sent-fixup) is "
        "working, 1 if some copy could not be fixed, 2 (saying why) while [sent] enabled = false "
        "unless --force, or when not run as root. A user without a home directory is named "
        "and skipped.")
    p.add_argument("--user", metavar="USER", help="only this user's Sent folder")
    p.add_argument("--force", action="store_true",
                   help="run even though [sent] enabled = false (e.g. to try it before "
                        "enabling the service)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_sent_fixup)


def cmd_sent_fixup(args: argparse.Namespace) -> int:
    """Run the backlog fixup once; print what happened to each copy."""
    import os
    import sys

    from mailopsd.core.state import StateDB
    from mailopsd.sent.once import run_once

    cfg = load(args)
    if not cfg.sent.enabled and not args.force:
        print("mailopsd sent-fixup: [sent] enabled = false in the configuration: the Exim "
              "filter that files the copies is probably not installed (docs/copy-to-sent.md); "
              "set enabled = true, or use --force to run anyway", file=sys.stderr)
        return EXIT_USAGE
    if os.geteuid() != 0:
        print("mailopsd sent-fixup: run as root (it works in every user's Maildir, as the "
              f"user, and writes the state database in {cfg.daemon.state_dir})",
              file=sys.stderr)
        return EXIT_USAGE
    counts = run_once(cfg, StateDB(cfg.daemon.state_dir), user=args.user)
    if args.json:
        print_json(dict(counts))
    else:
        rows = [(k, counts.get(k, 0)) for k in ORDER]
        rows.append(("still waiting for recipients", counts.get("pending_total", 0)))
        if counts.get("users_skipped"):
            rows.append(("users skipped (no home; see the warnings)", counts["users_skipped"]))
        print_table(("outcome", "copies"), rows)
    return EXIT_JOB_FAILED if counts.get("failed") else EXIT_OK
