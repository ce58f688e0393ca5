"""Live-learn commands: learn-enqueue (run by Dovecot's sieve pipe) and learn-queue.

``learn-enqueue`` runs once per IMAP move, so ``mailopsd.cli.main`` hands it to ``fast_main``
before building the full parser: it imports the config loader, the spool and the journald
client, nothing else; the settings come from ``livelearn.fastconfig`` (the keys it uses,
checked with the schema's rules), not from the full loader.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_USAGE, EXIT_TEMPFAIL = 0, 2, 75
DEFAULT_CONFIG = "/etc/mailopsd/mailopsd.toml"  # = core.config.loader's (not imported: speed)


def register(sub: Any) -> None:
    """Add learn-enqueue and learn-queue to the subparsers."""
    p = sub.add_parser(
        "learn-enqueue", help="queue one message from stdin for live learning (sieve pipe)",
        description="Read one message on stdin and queue it to be learned as spam or ham by "
        "the daemon's live-learn service. Meant for Dovecot's IMAPSieve pipe, which runs it as "
        "the mailbox user: the caller's uid is the submitting user. Exit 0 when queued, and "
        "also when refused by [jobs.learn-spam] max_size or [live-learn] daily_limit (counted, "
        "an event); 75 when it cannot persist the message (spool missing or not writable); 2 "
        "on bad arguments or an invalid config (an unreadable default config file means the "
        "defaults). Writes nothing on stderr unless it fails; "
        "events go to journald (EVENT=learn_enqueued, learn_enqueue_refused).")
    p.add_argument("klass", metavar="spam|ham", choices=("spam", "ham"))
    p.set_defaults(handler=cmd_learn_enqueue)
    q = sub.add_parser(
        "learn-queue", help="what waits in the live-learn spool, per user",
        description="Show the live-learn spool ([live-learn] spool_dir): per user, the "
        "messages pending (spam, ham), the age of the oldest, and today's refused count "
        "(over max_size or daily_limit). Needs root (the spool cannot be listed by users).")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(handler=cmd_learn_queue)


def _split_fast(argv: Sequence[str]) -> tuple[str | None, str] | None:
    """(config, class) when argv is exactly ``[-c FILE] learn-enqueue CLASS``; else None."""
    config: str | None = None
    args = list(argv)
    while args and args[0] != "learn-enqueue":
        opt = args.pop(0)
        if opt in ("-c", "--config") and args:
            config = args.pop(0)
        elif opt.startswith("--config="):
            config = opt.partition("=")[2]
        elif opt == "--log-level" and args:
            args.pop(0)
        elif opt.startswith("--log-level="):
            continue
        else:
            return None
    if len(args) != 2 or args[1] not in ("spam", "ham"):
        return None
    return config, args[1]


def fast_main(argv: Sequence[str]) -> int | None:
    """learn-enqueue without argparse; None when argv needs the full parser (help, errors)."""
    split = _split_fast(argv)
    if split is None:
        return None
    return enqueue_command(split[0], split[1])


def cmd_learn_enqueue(args: argparse.Namespace) -> int:
    """The argparse route to the same thing as fast_main."""
    return enqueue_command(args.config, args.klass)


def enqueue_command(config_file: str | None, klass: str) -> int:
    """Read the settings, enqueue stdin, report by journald; returns the exit code."""
    from mailopsd.livelearn.enqueue import drain, enqueue
    from mailopsd.livelearn.fastconfig import FastConfigError, all_readable, load

    try:
        stdin = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # started without a stdin at all
        print("mailopsd: learn-enqueue reads the message on stdin; none is open",
              file=sys.stderr)
        return EXIT_USAGE
    path = config_file or os.environ.get("MAILOPSD_CONFIG") or DEFAULT_CONFIG
    try:
        if path == DEFAULT_CONFIG and not all_readable(path):
            # as post-email: the user may not read a root-only default config (or drop-in);
            # then the defaults, never half of it (another spool_dir: exit 75, Dovecot logs it)
            from mailopsd.livelearn.fastconfig import EnqueueSettings

            cfg = EnqueueSettings()
        else:
            cfg = load(path)
    except FastConfigError as exc:
        drain(stdin)
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = enqueue(stdin, klass, cfg.spool_dir, max_size=cfg.max_size,
                  daily_limit=cfg.daily_limit)
    fields = {"CLASS": klass, "SIZE": str(out.size), "USER": _user_name(os.getuid())}
    if out.status == "queued":
        _event(cfg, "learn_enqueued", "6", fields, ENTRY=out.name)
        return EXIT_OK
    if out.status == "refused":
        _event(cfg, "learn_enqueue_refused", "4", fields, REASON=out.reason)
        return EXIT_OK
    _event(cfg, "learn_enqueue_failed", "3", fields, ERROR=out.reason)
    print(f"mailopsd: learn-enqueue: {out.reason}", file=sys.stderr)
    return EXIT_TEMPFAIL


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _event(cfg: Any, name: str, priority: str, fields: dict[str, str], **more: str) -> None:
    """One journald entry (and a line on stderr only if that is a terminal)."""
    from mailopsd.core.journald import JournalSender

    if cfg.level in ("warning", "error") and priority == "6":
        return
    entry = {**fields, **more}
    message = name + " " + " ".join(f"{k.lower()}={v}" for k, v in entry.items())
    if sys.stderr.isatty():
        print(message, file=sys.stderr)
    sender = JournalSender(cfg.journal_socket)
    try:
        sender.send({"MESSAGE": message, "PRIORITY": priority,
                     "SYSLOG_IDENTIFIER": cfg.syslog_identifier, "EVENT": name, **entry})
    except OSError:
        pass  # no journal: the exit code still says what matters; stderr must stay quiet
    finally:
        sender.close()


def cmd_learn_queue(args: argparse.Namespace) -> int:
    """Print the spool's per-user summary."""
    from mailopsd.cli.common import load, print_json, print_table
    from mailopsd.core.state import StateDB
    from mailopsd.livelearn.status import queue_status

    cfg = load(args, log=False)
    status = queue_status(cfg.live_learn.spool_dir, StateDB(cfg.daemon.state_dir))
    if args.json:
        print_json(status)
        return EXIT_OK
    rows = [(name, u["uid"], u["pending"], u["spam"], u["ham"], u["oldest_age_seconds"],
             u["refused"]) for name, u in sorted(status["users"].items())]
    print_table(("user", "uid", "pending", "spam", "ham", "oldest age (s)", "refused today"),
                rows)
    print(f"\n{status['pending']} pending in {status['spool_dir']}")
    return EXIT_OK
