"""``mailopsd learn-enqueue spam|ham``: one message from stdin into the spool, as the caller.

Run by Dovecot's sieve ``pipe`` as the mailbox user. The submitting user is the caller's uid,
recorded by the kernel as the entry's owner; nothing in the message or the arguments says who.
It always reads the whole message (a refusal must not give Dovecot a broken pipe), never waits
for sa-learn, and writes nothing on stderr unless it fails (Dovecot logs every stderr line as an
error): its events go to journald. Outcomes: ``queued``, ``refused`` (size or daily limit:
counted with an empty marker entry, exit 0) and ``failed`` (cannot persist: exit 75).
Imports only the standard library and the journald client.
"""

from __future__ import annotations

import contextlib
import errno
import os

from mailopsd.livelearn import spool

CHUNK = 1 << 16
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Outcome:
    """What one learn-enqueue did (a plain class: dataclasses cost a few ms to import)."""

    __slots__ = ("name", "reason", "size", "status")

    def __init__(self, status: str, size: int = 0, reason: str = "", name: str = "") -> None:
        self.status = status  # queued | refused | failed
        self.size = size
        self.reason = reason  # refused: size | daily_limit; failed: the error
        self.name = name  # the spool entry written (queued)


def drain(fd: int) -> int:
    """Read ``fd`` to its end; returns the number of bytes read."""
    total = 0
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except InterruptedError:
            continue
        if not chunk:
            return total
        total += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _mark_refused(spool_dir: str, reason: str) -> None:
    """Leave an empty ``refused.<reason>...`` entry so the daemon counts the refusal."""
    try:
        fd = os.open(os.path.join(spool_dir, spool.new_name(f"{spool.REFUSED}.{reason}")),
                     _O_NEW, 0o600)
        os.close(fd)
    except OSError:
        pass  # the event still says it; counting is best effort


def enqueue(stdin: int, klass: str, spool_dir: str, *, max_size: int, daily_limit: int,
            uid: int | None = None) -> Outcome:
    """Persist the message on ``stdin`` as a ``klass`` entry of ``spool_dir``; see the module doc.

    ``max_size`` and ``daily_limit`` 0 mean no limit. Never raises OSError: a failure to
    persist is the ``failed`` outcome (after stdin was read to its end).
    """
    if klass not in spool.CLASSES:
        raise ValueError(f"class must be spam or ham, not {klass!r}")
    uid = os.getuid() if uid is None else uid
    if daily_limit and spool.read_daily(spool_dir, uid, spool.today()) >= daily_limit:
        size = drain(stdin)
        _mark_refused(spool_dir, "daily_limit")
        return Outcome("refused", size, "daily_limit")
    name = spool.new_name(klass)
    tmp = os.path.join(spool_dir, spool.TMP_PREFIX + name)
    try:
        fd = os.open(tmp, _O_NEW, 0o600)
    except OSError as exc:
        size = drain(stdin)
        if max_size and size > max_size:
            return Outcome("refused", size, "size")
        return Outcome("failed", size, _why(exc, spool_dir))
    size, too_big = 0, False
    try:
        try:
            while True:
                try:
                    chunk = os.read(stdin, CHUNK)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                size += len(chunk)
                if max_size and size > max_size:
                    too_big = True
                    size += drain(stdin)
                    break
                _write_all(fd, chunk)
            if not too_big:
                os.fchmod(fd, 0o600)  # whatever the umask: nobody else reads it
                os.fsync(fd)
        finally:
            os.close(fd)
        if too_big:
            os.unlink(tmp)
            _mark_refused(spool_dir, "size")
            return Outcome("refused", size, "size")
        os.rename(tmp, os.path.join(spool_dir, name))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        size += drain(stdin)
        return Outcome("failed", size, _why(exc, spool_dir))
    return Outcome("queued", size, name=name)


def _why(exc: OSError, spool_dir: str) -> str:
    if exc.errno == errno.ENOENT:
        return f"spool directory {spool_dir} does not exist (is the live-learn service on?)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"spool directory {spool_dir} is not writable: {exc.strerror}"
    return f"cannot write into {spool_dir}: {exc.strerror or exc}"
