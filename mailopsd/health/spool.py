"""Exim's queue from its spool's -H files: count, frozen, oldest arrival; no exim fork.

A -H file starts: "<id>-H", "<user> <uid> <gid>", "<sender>", "<arrival time> <warnings>",
then "-flag" lines (``-frozen <time>`` among them; ``-acl[cm] NAME LEN`` is followed by a LEN
byte value that may hold newlines). What ``exim -bpc`` counts is every -H file in input/
(and input/?/ with split_spool_directory). Exim never rewrites a -H file in place: it writes
a new one and renames it over the old (spool_out.c), so the inode the directory listing already
carries (d_ino) tells a changed file: a scrape of a 10,000-message queue costs one directory
listing and no per-message system call; only new or rewritten -H files are read.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

_ACL = re.compile(rb"^-acl[cm]?\s+\S+\s+(\d+)$")
_HEAD_BYTES = 8192


@dataclass(frozen=True)
class QueueStats:
    """The queue as the spool says."""

    messages: int
    frozen: int
    oldest_arrival: float | None  # epoch seconds; None for an empty queue
    unreadable: int = 0
    present: bool = True

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest message arrived (0 for an empty queue)."""
        if self.oldest_arrival is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - self.oldest_arrival)


def parse_header_file(data: bytes) -> tuple[float, bool] | None:
    """(arrival time, frozen) from a -H file's start; None if it is not one."""
    lines = data.split(b"\n")
    if len(lines) < 5 or not lines[0].endswith(b"-H"):
        return None
    fields = lines[3].split()
    try:
        arrival = float(fields[0])
    except (IndexError, ValueError):
        return None
    frozen = False
    i = 4
    while i < len(lines):
        line = lines[i]
        if not line.startswith(b"-"):
            break
        if line.startswith(b"-frozen"):
            frozen = True
        m = _ACL.match(line)
        if m:
            # the value follows, LEN bytes and a newline: skip the lines it spans
            remaining = int(m.group(1))
            i += 1
            while i < len(lines) and remaining > 0:
                remaining -= len(lines[i]) + 1
                i += 1
            continue
        i += 1
    return arrival, frozen


def _read_head(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        data = f.read(_HEAD_BYTES)
        if len(data) == _HEAD_BYTES and b"\n\n" not in data:
            # long flag section (big ACL variables): the frozen flag may lie further in
            data += f.read()
    return data


class SpoolReader:
    """Reads ``<spool>/input`` with a per-file cache; thread-safe."""

    def __init__(self, spool: str) -> None:
        self.input_dir = os.path.join(spool, "input")
        self._cache: dict[str, tuple[int, tuple[float, bool] | None]] = {}
        self._lock = threading.Lock()

    def stats(self) -> QueueStats:
        """The queue now; an absent spool is an empty queue with ``present=False``."""
        with self._lock:
            return self._scan()

    def _scan(self) -> QueueStats:
        seen: dict[str, tuple[int, tuple[float, bool] | None]] = {}
        try:
            self._scan_dir(self.input_dir, seen, top=True)
        except FileNotFoundError:
            self._cache = {}
            return QueueStats(0, 0, None, present=False)
        self._cache = seen
        messages = frozen = unreadable = 0
        oldest: float | None = None
        for _key, parsed in seen.values():
            messages += 1
            if parsed is None:
                unreadable += 1
                continue
            arrival, is_frozen = parsed
            frozen += is_frozen
            if oldest is None or arrival < oldest:
                oldest = arrival
        return QueueStats(messages, frozen, oldest, unreadable)

    def _scan_dir(self, directory: str, seen: dict[str, tuple[int, tuple[float, bool] | None]],
                  top: bool) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith("-H"):
                    key = entry.inode()  # from the listing itself: no stat
                    cached = self._cache.get(entry.path)
                    if cached is not None and cached[0] == key:
                        seen[entry.path] = cached
                        continue
                    try:
                        parsed = parse_header_file(_read_head(entry.path))
                    except FileNotFoundError:  # delivered while we looked
                        continue
                    except OSError:
                        parsed = None
                    seen[entry.path] = (key, parsed)
                elif top and len(name) == 1 and entry.is_dir(follow_symlinks=False):
                    self._scan_dir(entry.path, seen, top=False)
