"""``mailopsd``: parse arguments, dispatch to a command, map errors to exit codes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mailopsd import __version__
from mailopsd.cli.common import (
    EXIT_BUSY,
    EXIT_CODES_HELP,
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    add_global_options,
)

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    import argparse

# Each module has register(subparsers); handlers are set with set_defaults(handler=fn).
COMMAND_MODULES = (
    "mailopsd.cli.cmd_core",
    "mailopsd.cli.cmd_config",
    "mailopsd.cli.cmd_scan",
    "mailopsd.cli.cmd_bans",
    "mailopsd.cli.cmd_post_email",
    "mailopsd.cli.cmd_bayes",
    "mailopsd.cli.cmd_sent",
    "mailopsd.cli.cmd_health",  # issue 18: health, tls-deploy
    "mailopsd.cli.cmd_livelearn",
    "mailopsd.cli.cmd_cluster",
    "mailopsd.cli.cmd_reload",
)

# Commands whose start-up is timed (scan-log against fail2ban-regex, start-up included): when
# argv starts with one, only its module is registered; its own parser and help are the same.
ALONE = {"scan-log": "mailopsd.cli.cmd_scan"}

DESCRIPTION = """\
mailopsd keeps a Debian mail server (Exim4, Dovecot, SpamAssassin) healthy from one daemon:
it bans abusive SMTP clients from the Exim mainlog, trains spamd's Bayes database from users'
Spam / Not Spam folders, updates SpamAssassin's rules safely, backs up Bayes, and fixes the
server-made copies in users' Sent folders. Run it as a systemd service (`mailopsd run`), or run
one job now with `mailopsd run-job ID`."""

EPILOG = f"""\
configuration: --config FILE, else $MAILOPSD_CONFIG, else /etc/mailopsd/mailopsd.toml,
  then the drop-ins mailopsd.d/*.toml beside it. `mailopsd check-config` validates it,
  `mailopsd config show --non-default` prints what it changes; every key is in
  /usr/share/doc/mailopsd/mailopsd.reference.toml (docs/ in the source).

{EXIT_CODES_HELP}"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full argument parser (imports only the light command modules); ``only``: register
    just this command module."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="mailopsd", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mailopsd {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="configuration file (default: $MAILOPSD_CONFIG or "
                             "/etc/mailopsd/mailopsd.toml)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="override logging.level for this run")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(name).register(sub)
    add_global_options(parser)  # --config / --log-level after the command name too
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    if "learn-enqueue" in (sys.argv[1:] if argv is None else argv):  # per IMAP move: no argparse
        from mailopsd.cli.cmd_livelearn import fast_main

        fast = fast_main(sys.argv[1:] if argv is None else argv)
        if fast is not None:
            return fast
    words = list(sys.argv[1:] if argv is None else argv)
    args = None
    if words[:1] == ["scan-log"]:  # timed start-up included: no argparse for a plain command
        from mailopsd.cli.cmd_scan import plain_args

        args = plain_args(words)
    if args is None:
        parser = build_parser(ALONE.get(words[0]) if words else None)
        args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from mailopsd.core.errors import ConfigError, JobBusyError, MailopsError, UnknownJobError

    try:
        return int(handler(args))
    except (ConfigError, UnknownJobError) as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobBusyError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except MailopsError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mailopsd bans list | head`: the reader left; not an error worth a traceback
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def run() -> None:
    """The ``mailopsd`` console script (and ``python -m mailopsd``): ``main()``, then exit.

    scan-log is timed fork to exit like fail2ban-regex, and the interpreter's own teardown
    (freeing every module and object one by one) costs it ~4 ms for nothing: after it, as mypy
    does, the atexit handlers run, the output is flushed, and the process ends (``os._exit``).
    scan-log holds no file open for writing and starts no thread or child. If the flush fails
    the exit code is 120, as Python's own exit would give."""
    rc = main()
    if sys.argv[1:2] != ["scan-log"]:
        sys.exit(rc)
    import atexit
    import os

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        rc = 120
    os._exit(rc)


if __name__ == "__main__":
    run()
