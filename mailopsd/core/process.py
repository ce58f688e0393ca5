"""The one way mailopsd runs an external program.

Commands are argument tuples (never a shell), built by pure functions in the callers. ``run``
applies a timeout, can run the program as another user with that user's HOME, kills the whole
process group on timeout or cancellation, captures output and logs one event per command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailopsd.core.errors import JobCancelled, ProcessError
from mailopsd.core.users import Account

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Result:
    """What a finished command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float


def child_env(account: Account | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: PATH, locale, and the account's HOME/USER (root's if None).

    Never inherit HOME: sa-learn with an inherited HOME=/root trains root's database.
    """
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if account is not None:
        env.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
    else:
        env.update(HOME="/root", USER="root", LOGNAME="root")
    if extra:
        env.update(extra)
    return env


def run(argv: Sequence[str], *, timeout: float, account: Account | None = None,
        env: Mapping[str, str] | None = None, input: bytes | None = None,
        cwd: str | None = None, umask: int = 0o077, ok_codes: Sequence[int] = (0,),
        cancel: threading.Event | None = None, log_output: bool = False) -> Result:
    """Run ``argv`` to completion and return its Result.

    Runs as ``account`` (setgroups([]) + gid + uid) when given, with that account's HOME.
    Raises ProcessError if it cannot start, times out, or exits with a code not in
    ``ok_codes``; raises JobCancelled if ``cancel`` is set while it runs (the group is killed).
    """
    from mailopsd.core.logs import get_logger

    log = get_logger("process")
    argv = tuple(str(a) for a in argv)
    kwargs: dict[str, object] = {}
    if account is not None and os.geteuid() == 0:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    workdir = cwd or (account.home if account else "/")
    if not os.path.isdir(workdir):
        # Popen would say "cannot run sa-learn: No such file or directory" for a missing cwd
        whose = f"{account.name}'s home directory" if account and not cwd else "working directory"
        log.error("command_failed", argv=argv, error=f"{whose} {workdir} does not exist")
        raise ProcessError(f"{whose} {workdir} does not exist; {argv[0]} was not run", argv)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=child_env(account, env),
                                cwd=workdir, umask=umask,
                                start_new_session=True, close_fds=True, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        log.error("command_failed", argv=argv, error=str(exc))
        raise ProcessError(f"cannot run {argv[0]}: {exc.strerror or exc}", argv) from exc
    deadline = start + timeout
    pending_input = input
    while True:
        step = min(0.5, max(0.01, deadline - time.monotonic()))
        try:
            out, err = proc.communicate(pending_input, timeout=step)
            break
        except subprocess.TimeoutExpired:
            pending_input = None  # communicate() keeps feeding what it started
            if cancel is not None and cancel.is_set():
                _kill_group(proc)
                log.warning("command_cancelled", argv=argv)
                raise JobCancelled(f"{argv[0]} cancelled") from None
            if time.monotonic() >= deadline:
                _kill_group(proc)
                log.error("command_timeout", argv=argv, timeout=timeout)
                raise ProcessError(f"{argv[0]} timed out after {timeout:.0f}s", argv) from None
    duration = time.monotonic() - start
    result = Result(argv, proc.returncode, out.decode("utf-8", "replace"),
                    err.decode("utf-8", "replace"), duration)
    fields: dict[str, object] = {"argv": argv, "rc": proc.returncode,
                                 "duration": round(duration, 3)}
    if account is not None:
        fields["as_user"] = account.name
    if log_output or proc.returncode not in ok_codes:
        fields.update(stdout=result.stdout[-2000:], stderr=result.stderr[-2000:])
    if proc.returncode not in ok_codes:
        log.warning("command_failed", **fields)
        raise ProcessError(f"{os.path.basename(argv[0])} exited with {proc.returncode}: "
                           f"{_last_line(result.stderr or result.stdout)}", argv,
                           proc.returncode, result.stderr)
    log.debug("command_finished", **fields)
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers; reap the child."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
