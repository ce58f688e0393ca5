"""The shipped unit: verified by systemd, and its ExecStart speaks sd_notify correctly."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.daemon import MAILOPSD, write_config

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mailopsd.service"
INSTALLED = "/usr/bin/mailopsd"


def rendered_unit(tmp_path: Path) -> Path:
    """The unit as installed with this checkout's mailopsd (the README's install step)."""
    out = tmp_path / "mailopsd.service"
    out.write_text(UNIT.read_text().replace(INSTALLED, MAILOPSD))
    return out


def unit_value(text: str, key: str) -> str:
    values = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]
    assert len(values) == 1, f"{key} must appear once"
    return values[0]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # --man=no: Documentation=man:mailopsd(8) exists once the package is installed (checked
    # in the container by test_systemd_package), not on this development machine
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(rendered_unit(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "mailopsd.service" not in result.stderr, result.stderr


def test_unit_declares_notify_watchdog_reload_and_capabilities() -> None:
    text = UNIT.read_text()
    assert unit_value(text, "Type") == "notify"
    assert unit_value(text, "ExecReload") == "/usr/bin/mailopsd reload --pid $MAINPID"
    assert unit_value(text, "Restart") == "on-failure"
    assert unit_value(text, "WatchdogSec")
    caps = set(unit_value(text, "CapabilityBoundingSet").split())
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"} <= caps
    assert "CAP_SYS_ADMIN" not in caps
    assert unit_value(text, "ProtectHome") == "no"


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def wait_for(self, assignment: str, timeout: float) -> float:
        """Seconds (monotonic) when a datagram containing ``assignment`` arrived."""
        deadline = time.monotonic() + timeout
        for when, msg in self.messages:
            if assignment in msg.split("\n"):
                return when
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {assignment} within {timeout}s; got {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            now = time.monotonic()
            self.messages.append((now, data))
            if assignment in data.split("\n"):
                return now


def test_exec_start_reports_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    exec_start = shlex.split(unit_value(rendered_unit(tmp_path).read_text(), "ExecStart"))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000",
               MAILOPSD_CONFIG=str(config))
    env.pop("JOURNAL_STREAM", None)
    start = time.monotonic()
    proc = subprocess.Popen(exec_start, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ready = notify.wait_for("READY=1", timeout=3)
        assert ready - start < 3
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for _, m in notify.messages)
        first = notify.wait_for("WATCHDOG=1", timeout=3)
        notify.messages.clear()
        second = notify.wait_for("WATCHDOG=1", timeout=3)
        assert 0.2 < second - first < 2.5, "pings at about half of WatchdogSec"
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", timeout=5)
        notify.wait_for("READY=1", timeout=5)
        term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=5)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - term < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.sock.close()
