"""Run the real ``mailopsd`` command (daemon or one-shot) from tests, and read its JSON events.

``write_config`` renders a TOML file from nested dicts (sandbox paths under a test root, the
blocker and Sent services off unless asked for). ``MailopsdProcess`` starts ``mailopsd run``,
collects the JSON event lines it writes on stderr, and stops exactly its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer for test configs (tables and scalar/list values)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        qkey = json.dumps(key) if not key.replace("_", "").isalnum() else key
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{qkey}", value))
        else:
            lines.append(f"{qkey} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        out += f"\n[{name}]\n" + dump_toml(table, f"{name}.")
    return out


def sandbox_config(root: Path, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict whose every path lives under ``root``; services off unless overridden."""
    cfg: dict[str, Any] = {
        "daemon": {"state_dir": str(root / "state"), "run_dir": str(root / "run")},
        "logging": {"target": "json", "level": "debug"},
        "blocker": {"enabled": False},
        "sent": {"enabled": False},
        "health": {"enabled": False},  # issue 18: no host spool/DNS/TLS checks in tests
    }
    for name, values in sections.items():
        merged = dict(cfg.get(name, {}))
        merged.update(values)
        cfg[name] = merged
    return cfg


def write_config(root: Path, **sections: Mapping[str, Any]) -> Path:
    """Write ``root/mailopsd.toml`` from ``sandbox_config`` and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "mailopsd.toml"
    path.write_text(dump_toml(sandbox_config(root, **sections)))
    return path


def run_cli(config: Path | None, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``mailopsd [--config FILE] ARGS`` to completion and return the result (text)."""
    argv = [MAILOPSD] + (["--config", str(config)] if config else []) + list(args)
    full_env = dict(os.environ)
    full_env.pop("JOURNAL_STREAM", None)
    full_env.pop("NOTIFY_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=input.decode() if input is not None else None, check=False)


def events(stderr: str) -> list[dict[str, Any]]:
    """The JSON event lines in a command's stderr (other lines ignored)."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class MailopsdProcess:
    """A running ``mailopsd run`` whose stderr events are collected in the background."""

    def __init__(self, config: Path, *, env: Mapping[str, str] | None = None,
                 argv: Sequence[str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(list(argv or [MAILOPSD, "--config", str(config), "run"]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=full_env)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()

    def events(self) -> list[dict[str, Any]]:
        """Every JSON event so far."""
        with self._cond:
            return events("\n".join(self.lines))

    def wait_event(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Wait for an event with this name (and field values); raises AssertionError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in events("\n".join(self.lines)):
                    if ev.get("event") == name and all(ev.get(k) == v for k, v in fields.items()):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no {name} event {fields} within {timeout}s:\n{tail}")
                self._cond.wait(min(left, 0.2))

    def signal(self, sig: int) -> None:
        """Send a signal to exactly this process."""
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> MailopsdProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
