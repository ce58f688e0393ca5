"""Run file work as a mailbox owner, in a short-lived worker process.

The parent (root; in the daemon, one of several threads) starts ``python -I -S -c BOOT`` as root
and writes one JSON request on its stdin. The worker, a fresh single-threaded process, imports
everything it will need, then drops to the account for good (``setgroups([])``, ``setresgid``,
``setresuid``, verified; uid 0 and gid 0 refused) BEFORE touching any user path, and runs one
allow-listed operation. From then on the kernel enforces the user's own rights.

Why not fork the daemon? Forking a threaded process and running Python in the child can deadlock
on locks other threads held. Why not ``subprocess(user=...)``? The interpreter and the package
may live where the user cannot read them (a pyenv under /root); the worker drops after import.
``-I -S`` keeps user-controlled paths and environment out of the import path; the cwd is ``/``.

Protocol on the worker's stdout, frames of ``type(1) + length(4, big-endian) + payload``:
``H`` item header (JSON), ``D`` item data chunks, ``E`` item end (JSON ``{"ok": bool, ...}``),
then exactly one ``R`` result (JSON) or ``X`` error (JSON ``{"error": ...}``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from mailopsd.core.errors import JobCancelled, MailopsError

if TYPE_CHECKING:  # the worker imports this module too: keep its start-up light
    import subprocess
    import threading

    from mailopsd.core.users import Account

# op name -> "module:function"; function(args: dict, channel: Channel) -> dict (JSON-able).
# Only these run as a user. Other areas add their own lines (import-light modules only).
OPERATIONS: dict[str, str] = {
    "maildir.collect": "mailopsd.maildir.ops:collect",
    "maildir.apply": "mailopsd.maildir.ops:apply",
}

_HEAD = struct.Struct(">cI")
MAX_JSON = 64 << 20
MAX_DATA = 4 << 20
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class AsUserError(MailopsError):
    """The worker could not run, broke the protocol, timed out, or reported an error."""


class ItemSink(Protocol):
    """Receives the items an operation streams (e.g. message contents)."""

    def begin(self, meta: dict[str, Any]) -> None:
        """An item starts; ``meta`` is what the operation said about it."""

    def data(self, chunk: bytes) -> None:
        """The next piece of the current item's content."""

    def end(self, ok: bool, info: dict[str, Any]) -> None:
        """The item is complete (ok) or was abandoned (not ok; ``info["reason"]`` says why)."""


# ---------------------------------------------------------------- worker side

class Channel:
    """The worker's end: sends items and the result as frames on a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _frame(self, kind: bytes, payload: bytes) -> None:
        view = memoryview(_HEAD.pack(kind, len(payload)) + payload)
        while view:
            view = view[os.write(self.fd, view):]

    def _json(self, kind: bytes, obj: object) -> None:
        self._frame(kind, json.dumps(obj, separators=(",", ":")).encode("ascii"))

    def item(self, meta: dict[str, Any], chunks: Iterable[bytes] = ()) -> bool:
        """Send one item; returns False (and tells the parent) if reading ``chunks`` failed."""
        self._json(b"H", meta)
        try:
            for chunk in chunks:
                for i in range(0, len(chunk), MAX_DATA):
                    self._frame(b"D", chunk[i:i + MAX_DATA])
        except (OSError, MailopsError) as exc:
            self._json(b"E", {"ok": False, "reason": type(exc).__name__})
            return False
        self._json(b"E", {"ok": True})
        return True


def drop_privileges(uid: int, gid: int) -> None:
    """Become uid/gid with no supplementary groups, irrevocably; raises AsUserError.

    Refuses uid 0 / gid 0. Without root it only accepts the identity it already has (tests).
    """
    if uid <= 0 or gid <= 0:
        raise AsUserError("refusing to act as root in a user's files")
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getgroups():
            raise AsUserError("supplementary groups survived")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise AsUserError(f"could not become uid {uid} gid {gid}")


def worker_main() -> int:
    """Entry point of the worker process (see module docstring)."""
    out = Channel(1)
    try:
        request = json.loads(sys.stdin.buffer.read(MAX_JSON))
        module_name, _, func_name = OPERATIONS[str(request["op"])].partition(":")
        func: Callable[[dict[str, Any], Channel], dict[str, Any]] = getattr(
            importlib.import_module(module_name), func_name)  # imported while still root
        drop_privileges(int(request["uid"]), int(request["gid"]))
        os.umask(0o077)
        os.chdir("/")
        result = func(request["args"], out)
    except BaseException as exc:  # the parent gets every failure as an X frame
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        line = f" at {where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else ""
        out._json(b"X", {"error": f"{type(exc).__name__}: {exc}{line}"})
        return 1
    out._json(b"R", result)
    return 0


# ---------------------------------------------------------------- parent side

def _boot() -> str:
    """The worker's -c program: our package's parent directory first on sys.path."""
    import mailopsd

    root = os.path.dirname(os.path.dirname(os.path.abspath(mailopsd.__file__)))
    return (f"import sys; sys.path.insert(0, {root!r}); "
            "from mailopsd.core.asuser import worker_main; sys.exit(worker_main())")


def run_as(account: Account, op: str, args: dict[str, Any], *, timeout: float,
           cancel: threading.Event | None = None, sink: ItemSink | None = None) -> dict[str, Any]:
    """Run the allow-listed operation ``op`` as ``account``; return its result dict.

    Items the operation streams go to ``sink``. Raises AsUserError (cannot start, crashed,
    reported an error, broke the protocol, timed out) or JobCancelled (``cancel`` set); in both
    cases the worker has been killed.
    """
    import subprocess
    import tempfile

    if op not in OPERATIONS:
        raise AsUserError(f"unknown as-user operation {op!r}")
    request = json.dumps({"op": op, "uid": account.uid, "gid": account.gid, "args": args})
    start = time.monotonic()
    with tempfile.TemporaryFile() as errf:
        try:
            proc = subprocess.Popen(
                (sys.executable, "-I", "-S", "-c", _boot()), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=errf, cwd="/", close_fds=True,
                env={"PATH": PATH, "LANG": "C.UTF-8"}, start_new_session=True)
        except OSError as exc:
            raise AsUserError(f"cannot start the as-user worker: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            try:
                proc.stdin.write(request.encode("utf-8", "surrogateescape"))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it died at once; its stderr says why
            reader = _FrameReader(proc.stdout.fileno(), sink)
            final = reader.run(start + timeout, cancel)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # it answered but does not exit: stop it
                _kill(proc)
        except BaseException:
            _kill(proc)
            raise
        finally:
            proc.stdout.close()
        if final is None:
            errf.seek(0)
            tail = errf.read()[-1000:].decode("utf-8", "replace").strip()
            raise AsUserError(f"as-user worker for {account.name} died (rc {proc.returncode})"
                              f"{': ' + tail if tail else ''}")
    failed, result = final
    if failed:
        raise AsUserError(f"{op} as {account.name}: {result.get('error')}")
    from mailopsd.core.logs import get_logger

    get_logger("asuser").debug("asuser_finished", op=op, as_user=account.name,
                               duration=round(time.monotonic() - start, 3))
    return result


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    proc.wait()


class _FrameReader:
    """Reads frames from the worker with a deadline, feeding items to a sink."""

    def __init__(self, fd: int, sink: ItemSink | None) -> None:
        self.fd = fd
        self.sink = sink
        self.buf = bytearray()
        self.in_item = False

    def run(self, deadline: float,
            cancel: threading.Event | None) -> tuple[bool, dict[str, Any]] | None:
        """Process frames until R or X: (is_error, payload); None if the worker just ended."""
        import select

        while True:
            if cancel is not None and cancel.is_set():
                raise JobCancelled("cancelled while the as-user worker ran")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AsUserError("as-user worker timed out")
            ready, _, _ = select.select([self.fd], [], [], min(0.5, left))
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
            done = self._drain()
            if done is not None:
                return done

    def _drain(self) -> tuple[bool, dict[str, Any]] | None:
        while len(self.buf) >= _HEAD.size:
            kind, length = _HEAD.unpack_from(self.buf)
            if length > (MAX_DATA if kind == b"D" else MAX_JSON):
                raise AsUserError(f"as-user worker sent an oversized {kind!r} frame")
            if len(self.buf) < _HEAD.size + length:
                return None
            payload = bytes(self.buf[_HEAD.size:_HEAD.size + length])
            del self.buf[:_HEAD.size + length]
            done = self._frame(kind, payload)
            if done is not None:
                return done
        return None

    def _frame(self, kind: bytes, payload: bytes) -> tuple[bool, dict[str, Any]] | None:
        if kind == b"D":
            if not self.in_item or self.sink is None:
                raise AsUserError("as-user worker sent data outside an item")
            self.sink.data(payload)
            return None
        obj = json.loads(payload)
        if not isinstance(obj, dict):
            raise AsUserError("as-user worker sent a malformed frame")
        if kind == b"H" and not self.in_item and self.sink is not None:
            self.in_item = True
            self.sink.begin(obj)
        elif kind == b"E" and self.in_item and self.sink is not None:
            self.in_item = False
            self.sink.end(bool(obj.get("ok")), obj)
        elif kind in (b"R", b"X") and not self.in_item:
            return kind == b"X", obj
        else:
            raise AsUserError(f"as-user worker sent an unexpected {kind!r} frame")
        return None
