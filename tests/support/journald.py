"""A real systemd-journald for tests, isolated in a private mount namespace.

PID 1 is not systemd on these machines, so the test starts ``systemd-journald`` itself, under
``unshare -m`` with tmpfs over /run/systemd, /run/log and /var/log/journal: nothing the host has
is touched. Its native socket is reachable from outside as /proc/<pid>/root/run/systemd/journal/
socket, and ``journalctl`` queries it through ``nsenter -m``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

JOURNALD = "/lib/systemd/systemd-journald"
_SETUP = (
    "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/journal /run/log "
    "&& mount -t tmpfs tmpfs /run/log "
    "&& if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi "
    f"&& exec {JOURNALD}"
)


class Journald:
    """A running private journald: its pid, socket path, and a journalctl query helper."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    @property
    def socket_path(self) -> str:
        """The native-protocol socket, as seen from the host mount namespace."""
        return f"/proc/{self.pid}/root/run/systemd/journal/socket"

    def query(self, *matches: str, timeout: float = 5.0,
              want: int = 1) -> list[dict[str, Any]]:
        """``journalctl -o json MATCH...`` inside journald's namespace; waits for ``want`` rows."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while True:
            out = subprocess.run(
                ["nsenter", "-t", str(self.pid), "-m", "journalctl", "--no-pager", "--all",
                 "-o", "json", *matches], capture_output=True, timeout=10, check=False).stdout
            rows = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            if len(rows) >= want or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


@contextmanager
def private_journald(timeout: float = 5.0) -> Iterator[Journald]:
    """Start journald in its own mount namespace; stop exactly that process afterwards."""
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", _SETUP],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jd = Journald(proc)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(jd.socket_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("systemd-journald did not start")
            time.sleep(0.05)
        yield jd
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
