"""scan-log on two CPUs: a forked child parses the second half of a large log file.

Parsing (finding candidate lines, the shortcut, the grammar) needs no state, so it can run in
another process; counting (the ban policy) depends on the order of every match and stays in
the parent, which counts its own half first and then the child's events, in file order: the
decisions are exactly those of one process (the unit tests compare them). The child's events
come back over a pipe, marshalled (our own child's plain tuples, never untrusted data).

Degrade, never stall: without a spare CPU, for a small, compressed or unseekable file there
is no child; if the child fails or sends garbage, ``collect`` returns None and the parent parses the
second half itself.
"""

from __future__ import annotations

import io
import marshal
import os
from collections.abc import Callable
from typing import IO, Any

MIN_SIZE = 4 * 1024 * 1024  # smaller files: a fork (~2-5 ms) would not pay for itself
# larger files: one process, streaming. The parent holds the child's events until it has
# counted its own half (~90 bytes per line of the child's half: +8 MB for 1M lines, 36 MB peak)
MAX_SIZE = 160 * 1024 * 1024
_NEWLINE_LOOK = 1024 * 1024  # the split is the first line start this far after the middle

Parse = Callable[[bytes], "tuple[list[Any], int]"]


class Half:
    """The second half of the file, being parsed by a child process."""

    def __init__(self, start: int, pid: int, fd: int) -> None:
        self.start = start  # byte offset where the child's half begins (a line start)
        self._pid = pid
        self._fd = fd
        self.collected = False

    def close(self) -> None:
        """Reap the child if ``collect`` was not called (the parent failed first)."""
        if not self.collected:
            self.collect()

    def collect(self) -> tuple[list[Any] | None, int]:
        """(the child's events in order, its line count), or (None, 0) if it failed.

        Waits for the child; call it exactly once (``close`` after an error)."""
        chunks = []
        self.collected = True
        try:
            while True:
                data = os.read(self._fd, 1 << 20)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(self._fd)
            _, status = os.waitpid(self._pid, 0)
        try:
            events, lines = marshal.loads(b"".join(chunks))
        except (EOFError, ValueError, TypeError):
            return None, 0
        if os.waitstatus_to_exitcode(status) != 0 or not isinstance(events, list) \
                or not isinstance(lines, int):
            return None, 0
        return events, lines


def _spare_cpu() -> bool:
    """Whether a second CPU is likely free: two usable CPUs and a load average below their count.

    Measured at load 1.6-2.0 on 2 CPUs (bench/scan_fork.py, paired): median wall 0.233 s with
    the child vs 0.251 s without (200k lines, 20 runs), 1.206 vs 1.214 s (1M lines, 6 runs); one
    earlier 10-run session 0.234 vs 0.215 s. On saturated CPUs the child only takes turns.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return cpus >= 2 and load < cpus


def split_point(f: IO[bytes]) -> int | None:
    """The first line start after the middle of the plain file ``f``, or None (no split)."""
    if not isinstance(f, io.BufferedReader):  # e.g. gzip: its fileno() is the compressed file
        return None
    try:
        size = os.fstat(f.fileno()).st_size
        if not MIN_SIZE <= size <= MAX_SIZE or f.tell() != 0 or not f.seekable():
            return None
        f.seek(size // 2)
        ahead = f.read(_NEWLINE_LOOK)
        f.seek(0)
    except (OSError, ValueError):
        return None
    nl = ahead.find(b"\n")
    return None if nl < 0 else size // 2 + nl + 1


def start(f: IO[bytes], path: str, parse: Parse, blocks: Callable[..., Any]) -> Half | None:
    """Fork a child parsing ``f`` from its split point to the end, or None (do it all here).

    ``blocks(f, path, stop)`` yields whole-line blocks; ``parse(block)`` gives (events, lines).
    """
    if not _spare_cpu():
        return None
    mid = split_point(f)
    if mid is None:
        return None
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: parse, send, leave without running any parent clean-up
        code = 1
        try:
            os.close(r)
            # a new open file description: a seek must not move the parent's shared offset
            with open(f"/proc/self/fd/{f.fileno()}", "rb") as own:
                own.seek(mid)
                events: list[Any] = []
                lines = 0
                for body in blocks(own, path, None):
                    ev, n = parse(body)
                    events += ev
                    lines += n
            data = memoryview(marshal.dumps((events, lines)))
            while data:
                data = data[os.write(w, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return Half(mid, pid, r)
