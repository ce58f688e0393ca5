"""The daemon's answer to a reload, for ``mailopsd reload`` (systemd's ExecReload) to wait on.

After each SIGHUP the daemon writes ``<run_dir>/reload.json``: a counter that grows with every
reload, whether the new configuration was applied, and the problems (dotted keys) if it was
refused. ``mailopsd reload`` reads the counter, sends SIGHUP, and waits for a higher one, so
``systemctl reload`` itself fails when the daemon kept the old configuration.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

VERDICT_FILE = "reload.json"


@dataclass(frozen=True)
class Verdict:
    """One reload's outcome as the daemon recorded it."""

    generation: int
    applied: bool
    problems: tuple[str, ...] = ()
    pid: int = 0


def verdict_path(run_dir: str) -> str:
    return os.path.join(run_dir, VERDICT_FILE)


def read_verdict(run_dir: str) -> Verdict | None:
    """The last verdict, or None if there is none (or it is unreadable)."""
    try:
        fd = os.open(verdict_path(run_dir), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = json.loads(os.read(fd, 1 << 20).decode("utf-8"))
        return Verdict(int(data["generation"]), bool(data["applied"]),
                       tuple(str(p) for p in data.get("problems", [])), int(data.get("pid", 0)))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def write_verdict(run_dir: str, applied: bool, problems: list[str]) -> Verdict:
    """Record a reload's outcome atomically (temp file + rename), one generation higher."""
    previous = read_verdict(run_dir)
    verdict = Verdict((previous.generation if previous else 0) + 1, applied, tuple(problems),
                      os.getpid())
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    tmp = verdict_path(run_dir) + f".{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps({"generation": verdict.generation, "applied": applied,
                                 "problems": problems, "pid": verdict.pid,
                                 "time": time.time()}).encode())
    finally:
        os.close(fd)
    os.replace(tmp, verdict_path(run_dir))
    return verdict


def wait_for_verdict(run_dir: str, after: int, timeout: float,
                     alive: object = None) -> Verdict | None:
    """Poll for a verdict newer than generation ``after``; None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        verdict = read_verdict(run_dir)
        if verdict is not None and verdict.generation > after:
            return verdict
        if time.monotonic() >= deadline:
            return None
        if callable(alive) and not alive():
            return None
        time.sleep(0.05)
