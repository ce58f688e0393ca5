"""Reader: complete lines from one open file, from a byte offset (the LogFollower's engine).

Reads with ``os.pread`` at its own position, so the file descriptor can be shared and a renamed
or truncated file is never confused with the name. ``offset`` is always a line boundary: the
start of the first byte not yet delivered, which is what gets saved.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat

CHUNK = 256 * 1024


def open_regular(path: str) -> int:
    """Open a regular file read-only (no blocking on a FIFO); raises OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"not a regular file: {path}")
    return fd


def first_line_hash(fd: int, max_line: int) -> str:
    """SHA-256 (hex) of the file's first line (cut at ``max_line``); "" until it is complete."""
    data = os.pread(fd, max_line + 1, 0)
    nl = data.find(b"\n")
    if nl >= 0:
        line = data[:nl]
    elif len(data) > max_line:
        line = data[:max_line]
    else:
        return ""
    return hashlib.sha256(line).hexdigest()


Snapshot = tuple[int, int, bytes, "bytes | None", int, int]


class Reader:
    """Splits one file's bytes into complete lines; see the module docstring."""

    def __init__(self, fd: int, path: str, offset: int, max_line: int) -> None:
        st = os.fstat(fd)
        self.fd = fd
        self.path = path
        self.dev: int = st.st_dev
        self.ino: int = st.st_ino
        self.offset = offset  # start of the first undelivered line
        self.pos = offset  # how far the file was read
        self.max_line = max_line
        self.hash = ""
        self.pending = b""  # bytes of an incomplete line (read, not delivered)
        self.long_head: bytes | None = None  # kept head of an over-long line being skipped
        self.long_start = 0
        self._too_long: list[tuple[int, int]] = []

    def seek_end(self) -> None:
        """Skip to just after the last complete line now in the file."""
        size = os.fstat(self.fd).st_size
        start = max(0, size - self.max_line - 1)
        tail = os.pread(self.fd, size - start, start)
        nl = tail.rfind(b"\n")
        self.offset = self.pos = start + nl + 1 if nl >= 0 else start
        self.pending, self.long_head = b"", None

    def snapshot(self) -> Snapshot:
        """The reading state, to undo a chunk whose delivery failed."""
        return (self.offset, self.pos, self.pending, self.long_head, self.long_start,
                len(self._too_long))

    def restore(self, snap: Snapshot) -> None:
        """Go back to a snapshot."""
        self.offset, self.pos, self.pending, self.long_head, self.long_start, n = snap
        del self._too_long[n:]

    def take_too_long(self) -> list[tuple[int, int]]:
        """(offset, length) of over-long lines cut since the last call."""
        out, self._too_long = self._too_long, []
        return out

    def pending_bytes(self) -> int:
        """Bytes read but not delivered (an incomplete last line)."""
        return len(self.pending) + (len(self.long_head) if self.long_head is not None else 0)

    def _pread(self, n: int, pos: int) -> bytes:
        """Up to ``n`` bytes of the file's content at ``pos`` (StreamReader decompresses)."""
        return os.pread(self.fd, n, pos)

    def line_hash(self) -> str:
        """first_line_hash of this file's content (the decompressed content for a stream)."""
        data = self._pread(self.max_line + 1, 0)
        nl = data.find(b"\n")
        if nl >= 0:
            return hashlib.sha256(data[:nl]).hexdigest()
        if len(data) > self.max_line:
            return hashlib.sha256(data[:self.max_line]).hexdigest()
        return ""

    def size(self) -> int:
        """How many bytes the file holds now (of content, for a compressed copy: as read)."""
        return os.fstat(self.fd).st_size

    def read_chunk(self) -> list[bytes] | None:
        """The complete lines in the next chunk (maybe none); None at end of file."""
        data = self._pread(CHUNK, self.pos)
        if not data:
            return None
        base = self.pos
        self.pos += len(data)
        lines: list[bytes] = []
        start = 0
        if self.long_head is not None:
            nl = data.find(b"\n")
            if nl < 0:
                return lines  # still inside the over-long line: its bytes are skipped
            lines.append(self.long_head)
            self._too_long.append((self.long_start, base + nl - self.long_start))
            self.long_head = None
            self.offset = base + nl + 1
            start = nl + 1
        buf = self.pending + data[start:] if self.pending else data[start:]
        last = buf.rfind(b"\n")
        if last >= 0:
            parts = buf[:last].split(b"\n")
            if any(len(p) > self.max_line for p in parts):
                parts = self._cut(parts)
            lines.extend(parts)
            self.offset += last + 1
            rest = buf[last + 1:]
        else:
            rest = buf
        if len(rest) > self.max_line:
            self.long_head, self.long_start, self.pending = rest[:self.max_line], self.offset, b""
        else:
            self.pending = rest
        return lines

    def _cut(self, parts: list[bytes]) -> list[bytes]:
        out, o = [], self.offset
        for p in parts:
            n = len(p)
            if n > self.max_line:
                self._too_long.append((o, n))
                p = p[:self.max_line]
            out.append(p)
            o += n + 1
        return out

    def close(self) -> None:
        """Close the file (errors ignored)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
