"""``mailopsd reload``: check the new configuration, SIGHUP the daemon, report its verdict.

systemd runs it as ExecReload, so ``systemctl reload mailopsd`` fails (and ``systemctl status``
shows the dotted keys) when the new file is broken, instead of logging "Reloaded" while the
daemon quietly keeps the old configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add the ``reload`` command."""
    p = sub.add_parser(
        "reload", help="apply an edited configuration to the running daemon (ExecReload)",
        description="Check the configuration file, send SIGHUP to the running daemon and wait "
        "until it has applied the new configuration or refused it. Exits 0 when applied, 2 "
        "when the file is invalid (the daemon keeps the old configuration; every mistake is "
        "printed with its dotted key), 3 when no daemon runs, 1 when the daemon gave no answer "
        "in time.")
    p.add_argument("--pid", type=int, metavar="PID",
                   help="the daemon's pid (systemd passes $MAINPID); default: the pid lock "
                   "in daemon.run_dir")
    p.add_argument("--timeout", type=float, default=25.0, metavar="SECONDS",
                   help="how long to wait for the daemon's verdict (default: 25)")
    p.set_defaults(handler=cmd_reload)


def _daemon_pid(run_dir: str) -> int | None:
    import os

    from mailopsd.cli.cmd_core import PID_FILE
    from mailopsd.core.locks import FileLock

    lock = FileLock(os.path.join(run_dir, PID_FILE))
    return lock.holder() if lock.held_elsewhere() else None




def cmd_reload(args: argparse.Namespace) -> int:
    """Check, signal, wait; the exit code is the daemon's verdict."""
    import os
    import signal

    from mailopsd.core.config import config_path_from, load_config
    from mailopsd.core.errors import ConfigError
    from mailopsd.core.state import pid_alive
    from mailopsd.daemon.reload_verdict import read_verdict, wait_for_verdict

    path = config_path_from(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"mailopsd: reload refused, the daemon keeps its configuration: {exc}",
              file=sys.stderr)
        return EXIT_USAGE
    run_dir = str(cfg.daemon.run_dir)
    pid = args.pid if args.pid and args.pid > 0 else _daemon_pid(run_dir)
    if pid is None or not pid_alive(pid):
        print("mailopsd: reload: the daemon is not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    before = read_verdict(run_dir)
    os.kill(pid, signal.SIGHUP)
    verdict = wait_for_verdict(run_dir, before.generation if before else 0, args.timeout,
                               alive=lambda: pid_alive(pid))
    if verdict is None:
        print(f"mailopsd: reload: no answer from the daemon (pid {pid}) within "
              f"{args.timeout:g}s", file=sys.stderr)
        return EXIT_JOB_FAILED
    if not verdict.applied:
        print(f"mailopsd: reload refused by the daemon, old configuration kept: "
              f"{len(verdict.problems)} configuration error(s) in {path}:", file=sys.stderr)
        for problem in verdict.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"mailopsd: configuration {path} applied (pid {pid})")
    return EXIT_OK
