"""sd_notify(3) in a few lines: datagrams to $NOTIFY_SOCKET, no libsystemd needed."""

from __future__ import annotations

import os
import socket


def notify(*assignments: str, environ: dict[str, str] | None = None) -> bool:
    """Send e.g. notify("READY=1", "STATUS=serving"); returns False when not under systemd.

    Never raises: a broken notify socket must not stop the daemon.
    """
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    target = "\0" + addr[1:] if addr[0] == "@" else addr
    data = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, target)
        return True
    except OSError:
        return False


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec (from WATCHDOG_USEC, if meant for this pid), else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000
