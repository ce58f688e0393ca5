"""Small helpers shared by the test-support modules: test roots, free ports, polling, pids."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

# Integration tests need root (users, netns, Exim with trusted_configs); skip otherwise.
root_required = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


class SupportError(RuntimeError):
    """A test fixture could not be set up or torn down."""


def make_test_root(prefix: str = "mailopsd-test-") -> Path:
    """Create a fresh 0755 directory under /var/tmp and return it.

    /var/tmp rather than pytest's tmp_path: that one is 0700 under /tmp/pytest-of-root, which
    Debian-exim and the test users cannot traverse.
    """
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix=prefix))
    path.chmod(0o755)
    return path


def remove_test_root(path: Path) -> None:
    """Delete a directory made by make_test_root (refuses anything outside /var/tmp or /tmp)."""
    resolved = path.resolve()
    if resolved.parent not in (Path("/var/tmp"), Path("/tmp")):
        raise SupportError(f"refusing to remove {resolved}: not a test root")
    shutil.rmtree(resolved, ignore_errors=True)


@contextlib.contextmanager
def scratch_root(prefix: str = "mailopsd-test-") -> Iterator[Path]:
    """Context manager: a 0755 scratch directory under /var/tmp, removed afterwards."""
    path = make_test_root(prefix)
    try:
        yield path
    finally:
        remove_test_root(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to 0, read, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Raises TimeoutError naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to host:port succeeds right now (in this process's netns)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening(pid: int, port: int) -> bool:
    """True if the network namespace of ``pid`` has a TCP socket listening on ``port``.

    Reads /proc/PID/net/tcp{,6} rather than connecting: a probe connection would add
    "no host name found" lines to the mainlog that tests count.
    """
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # The state letter follows the parenthesised command name.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None if it is missing or empty."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return int(text.split()[0]) if text else None


def kill_pid(pid: int, timeout: float = 10.0, sig: int = 15) -> None:
    """Send ``sig`` to exactly ``pid``, wait for it to go, SIGKILL it if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    try:
        wait_until(lambda: not pid_alive(pid), timeout, what=f"pid {pid} to exit")
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        wait_until(lambda: not pid_alive(pid), 5.0, what=f"pid {pid} to die")


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (empty if it is gone)."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def random_suffix(n: int = 6) -> str:
    """``n`` random lowercase letters/digits, starting with a letter."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    raw = os.urandom(n)
    return alphabet[raw[0] % 26] + "".join(alphabet[b % 36] for b in raw[1:])
