"""The rotated copies of a log, oldest first, compressed ones included (missed rotations).

Debian's logrotate for Exim (exim4-base) keeps ``mainlog.1`` uncompressed (``delaycompress``)
and ``mainlog.2.gz`` ... ``mainlog.N.gz``; other setups compress at once, use ``copytruncate``
or ``dateext`` (``mainlog-20261207.gz``). When the follower was down (or slow) across several
rotations, the file it was reading has become one of those, maybe compressed (a new inode, but
the same first line): ``catch_up`` finds it by inode or first-line hash and lists every newer
copy, so the follower reads the rest of it, then each newer copy whole, then the live file.

``StreamReader`` reads a compressed copy through Python's decompressors with the plain
Reader's interface (offsets are uncompressed bytes); a corrupt or cut archive reads as end of
file and says how far it got (``error``), never raises into the follower.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import IO

from mailopsd.logtail.reader import Reader, first_line_hash, open_regular

OPENERS = {".gz": gzip.GzipFile, ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}
STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)
PIECE = 16384


class StreamReader(Reader):
    """A Reader over a compressed copy; see the module docstring."""

    def __init__(self, fd: int, path: str, offset: int, max_line: int) -> None:
        super().__init__(fd, path, offset, max_line)
        opener = OPENERS[os.path.splitext(path)[1]]
        self._raw: IO[bytes] = os.fdopen(os.dup(fd), "rb")
        self._stream: IO[bytes] = opener(fileobj=self._raw, mode="rb")
        self._at = 0
        self.error: str | None = None

    def _pread(self, n: int, pos: int) -> bytes:
        if self.error is not None:
            return b""
        parts: list[bytes] = []
        got = 0
        try:
            if pos != self._at:
                self._stream.seek(pos)
            while got < n:  # in pieces: what decompressed before a damaged spot is kept
                piece = self._stream.read1(min(PIECE, n - got))  # type: ignore[attr-defined]
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except STREAM_ERRORS as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        data = b"".join(parts)
        self._at = pos + len(data)
        return data

    def size(self) -> int:
        """The content bytes known so far (a stream's length is known only at its end)."""
        return self._at

    def close(self) -> None:
        """Close the decompressor and the file (errors ignored)."""
        for f in (self._stream, self._raw):
            try:
                f.close()
            except (OSError, *STREAM_ERRORS):
                pass
        super().close()


def stream_first_line_hash(path: str, max_line: int) -> str:
    """first_line_hash of a compressed copy's content ("" if unreadable or no full line)."""
    opener = OPENERS.get(os.path.splitext(path)[1])
    if opener is None:
        return ""
    data = b""
    try:
        with opener(path, "rb") as f:
            while len(data) <= max_line and b"\n" not in data:
                piece = f.read1(PIECE)
                if not piece:
                    break
                data += piece
    except STREAM_ERRORS:
        pass  # a damaged archive: its first line may still be whole
    nl = data.find(b"\n")
    if nl >= 0:
        return hashlib.sha256(data[:nl]).hexdigest()
    return hashlib.sha256(data[:max_line]).hexdigest() if len(data) > max_line else ""


_SUFFIX = re.compile(r"^[.-](\d+)(\.gz|\.bz2|\.xz)?$")


def rotated_files(path: str) -> list[str]:
    """``path``'s rotated copies, oldest first: ``.N`` (highest N first) or dated names
    (oldest date first); compressed ones only in formats this module can read."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    found: list[tuple[tuple[int, int], str]] = []
    for n in names:
        m = _SUFFIX.match(n[len(base):]) if n.startswith(base) else None
        if m is None:
            continue
        number = int(m.group(1))
        # logrotate's numbers count back in time; dateext stamps (>= 8 digits) count forward
        key = (1, number) if len(m.group(1)) >= 8 else (0, -number)
        found.append((key, os.path.join(d, n)))
    return [p for _, p in sorted(found)]


def open_copy(path: str, offset: int, max_line: int) -> Reader | None:
    """A Reader (or StreamReader) on a rotated copy at ``offset``; None if it cannot be opened."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        if os.path.splitext(path)[1] in OPENERS:
            return StreamReader(fd, path, offset, max_line)
        return Reader(fd, path, offset, max_line)
    except (OSError, *STREAM_ERRORS):
        os.close(fd)
        return None


@dataclass
class CatchUp:
    """Where a saved position is now: ``reader`` on the copy that holds it (None if it is gone
    for good) and the newer copies to read whole afterwards, oldest first."""

    reader: Reader | None
    later: list[str] = field(default_factory=list)
    ambiguous: bool = False
    ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (dev, inode) seen


def catch_up(path: str, dev_ino: tuple[int, int] | None, h: str, offset: int, max_line: int,
             saved_at: float) -> CatchUp:
    """Find the copy holding a saved position and the copies written after it.

    The copy is the uncompressed one with the same inode (and first line), else the one with
    the same first line (compressed copies, copytruncate copies) at least ``offset`` bytes
    long. A file seen twice (``mainlog.1`` and the ``mainlog.1.gz`` logrotate is writing from
    it, while it runs) counts once, as its uncompressed copy; no copy starting with the line
    the saved file starts with is ever in ``later``. First lines can repeat (the same client
    in the same second); when several copies match only by first line, the NEWEST is taken
    (``ambiguous``): lines may then be skipped, never read twice (that could ban wrongly).
    If the copy is gone, ``later`` holds every copy modified after ``saved_at``.
    """
    seen: dict[str, int] = {}  # first-line hash -> index in entries
    entries: list[tuple[str, str, os.stat_result]] = []
    for p in rotated_files(path):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        compressed = os.path.splitext(p)[1] in OPENERS
        fh = stream_first_line_hash(p, max_line) if compressed else _plain_hash(p, max_line)
        if compressed and not fh:
            continue  # being written by logrotate right now (its source is still there)
        twin = seen.get(fh) if fh else None
        if twin is not None and (compressed or entries[twin][0].endswith(tuple(OPENERS))):
            # the same file twice (a plain copy and the archive logrotate made of it, while it
            # runs): keep the plain one, at the archive's place in the order if it came first
            if not compressed:
                entries[twin] = (p, fh, st)
            continue
        if fh:
            seen[fh] = len(entries)
        entries.append((p, fh, st))
    ids = {p: (st.st_dev, st.st_ino) for p, _, st in entries}
    exact = [i for i, (p, fh, st) in enumerate(entries)
             if dev_ino is not None and (st.st_dev, st.st_ino) == dev_ino
             and (not h or fh == h) and os.path.splitext(p)[1] not in OPENERS]
    by_line = [i for i, (p, fh, st) in enumerate(entries) if h and fh == h and i not in exact
               and (os.path.splitext(p)[1] in OPENERS or st.st_size >= offset)]
    for i, ambiguous in [(i, False) for i in exact] + [(i, len(by_line) > 1)
                                                      for i in reversed(by_line)]:
        reader = open_copy(entries[i][0], offset, max_line)
        if reader is None:
            continue
        reader.hash = h
        later = [p for p, fh, _ in entries[i + 1:] if not (h and fh == h)]
        return CatchUp(reader, later, ambiguous, ids)
    return CatchUp(None, [p for p, fh, st in entries
                          if st.st_mtime > saved_at and not (h and fh == h)], False, ids)


def _plain_hash(p: str, max_line: int) -> str:
    try:
        fd = open_regular(p)
    except OSError:
        return ""
    try:
        return first_line_hash(fd, max_line)
    finally:
        os.close(fd)
