"""A minimal client of journald's native protocol (no C library, no python-systemd).

Each entry is one datagram of ``KEY=value\\n`` fields on /run/systemd/journal/socket; values with
newlines use the binary form (KEY\\n, 64-bit little-endian length, value, \\n). Entries too large
for a datagram go through a sealed memfd passed with SCM_RIGHTS, as sd_journal_send() does.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import threading
from collections.abc import Mapping

_BAD_KEY_CHARS = re.compile(r"[^A-Z0-9_]")


def field_name(key: str) -> str:
    """A journald field name for an event key: upper case, [A-Z0-9_], no leading underscore."""
    name = _BAD_KEY_CHARS.sub("_", key.upper()).lstrip("_")
    if not name:
        return "FIELD"
    if name[0].isdigit():
        name = "F_" + name
    return name[:64]


def encode(fields: Mapping[str, str]) -> bytes:
    """Serialise fields in journald's native format."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        name = key.encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


class JournalSender:
    """Sends entries to journald; raises OSError if the journal cannot be reached."""

    def __init__(self, socket_path: str = "/run/systemd/journal/socket") -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether the journal socket exists."""
        return os.path.exists(self.socket_path)

    def send(self, fields: Mapping[str, str]) -> None:
        """Send one entry; large ones via a memfd. Raises OSError on failure."""
        data = encode(fields)
        with self._lock:
            try:
                self._sock.sendto(data, self.socket_path)
                return
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
            fd = os.memfd_create("mailopsd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                os.write(fd, data)
                import fcntl

                seals = (fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                         | fcntl.F_SEAL_SEAL)
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
                self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         struct.pack("i", fd))], 0, self.socket_path)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
