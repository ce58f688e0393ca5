"""Safe Maildir access: THE one way mailopsd touches a user's Maildir.

Call these functions in a process that already IS the mailbox owner (``mailopsd.core.asuser`` runs
them in a worker that dropped to the owner's uid/gid), so the kernel enforces the user's own
rights; on top of that nothing here ever follows a symlink the user could plant:

- the home directory (from passwd, root's choice) is opened normally; every component below it
  (the Maildir, folders, ``cur``/``new``/``tmp``) is opened with ``O_DIRECTORY|O_NOFOLLOW`` from
  its parent's descriptor and must be owned by the user (UnsafePathError otherwise);
- messages are looked at with ``lstat``/``O_NOFOLLOW`` relative to those descriptors and must be
  regular files owned by the user; names are only ever used with ``dir_fd=`` system calls;
- message content is never changed in place (Dovecot caches sizes): a changed message is written
  under a NEW unique name in ``tmp/``, fsynced, renamed into place, and only then is the old name
  unlinked; moves are link-then-unlink, so a crash can leave a duplicate but never lose a message.

Flags live in the name's info suffix ``:2,FLAGS`` (ASCII order; Dovecot keywords a-z after the
capitals); unknown flags are kept. Hard links are accepted when the file is owned by the user:
Dovecot's IMAP COPY hard-links by default, and since content is never modified and only names in
the user's own folders are unlinked or linked, another name of the inode is never affected.
This module imports only the standard library and ``mailopsd.core.errors`` (the worker runs with
``python -I -S``).

API at a glance (all raise UnsafePathError for a symlink/foreign component, FolderMissing for a
missing one, OSError for I/O errors):

- ``Maildir.open(home, relpath, uid)`` (context manager), ``.folder(name)`` (``""`` = INBOX),
  ``.ensure_folder(name)``;
- ``Folder.names(subdir)``, ``.lookup(subdir, name)`` / ``.inspect(subdir, name, max_size=)``
  -> MessageRef or a reason string, ``.read(ref)`` -> chunks of exactly that inode,
  ``.locate(ref)`` (after a client renamed it), ``.inodes()``, ``.unlink(ref)``,
  ``.link_into(ref, dest, add_flags=)``, ``.write_message(data, ...)``,
  ``.replace_message(ref, data, add_flags=)``;
- ``MessageRef`` (JSON-able, ``.same(other)``),
  ``open_dir``, ``fsync_dir``; names and flags in ``mailopsd.maildir.names``.

Operations for the as-user worker built on these live in ``mailopsd.maildir.ops``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from mailopsd.core.errors import MailopsError, UnsafePathError
from mailopsd.maildir.names import (
    check_folder_name,
    split_info,
    unique_name,
    valid_message_name,
    with_flags,
)

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_MSG = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
CHUNK = 1 << 20


class FolderMissing(MailopsError):
    """A Maildir or folder that does not exist (not an error for optional folders)."""


@dataclass(frozen=True)
class MessageRef:
    """One message file as it was seen: where, and which inode (so we act on exactly that file)."""

    subdir: str  # "new" or "cur"
    name: str
    dev: int
    ino: int
    size: int
    nlink: int = 1
    mtime_ns: int = 0  # 0 = unknown

    def same(self, other: MessageRef) -> bool:
        """Whether ``other`` is the very file this ref saw: inode, size and mtime (messages
        never change, and this guards against a recycled inode number)."""
        return ((other.dev, other.ino, other.size) == (self.dev, self.ino, self.size)
                and (not self.mtime_ns or not other.mtime_ns
                     or other.mtime_ns == self.mtime_ns))

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the worker protocol."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageRef:
        """Rebuild from to_json(); raises KeyError/TypeError/ValueError on a malformed dict."""
        ref = cls(str(data["subdir"]), str(data["name"]), int(data["dev"]), int(data["ino"]),
                  int(data["size"]), int(data.get("nlink", 1)), int(data.get("mtime_ns", 0)))
        if ref.subdir not in ("new", "cur") or not valid_message_name(ref.name):
            raise ValueError("bad message reference")
        return ref


def open_dir(name: str, *, dir_fd: int | None, uid: int) -> int:
    """Open directory ``name`` (relative to dir_fd) without following a symlink; check its owner.

    Raises FolderMissing if absent, UnsafePathError if it is a symlink, not a directory, or not
    owned by ``uid``; OSError for anything else.
    """
    try:
        fd = os.open(name, O_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FolderMissing(f"{name} does not exist") from None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(f"{name} is a symlink or not a directory") from None
        raise
    st = os.fstat(fd)
    if st.st_uid != uid:
        os.close(fd)
        raise UnsafePathError(f"{name} is owned by uid {st.st_uid}, not {uid}")
    return fd


def fsync_dir(fd: int) -> None:
    """fsync a directory descriptor (makes renames/links durable)."""
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise


class Folder:
    """One Maildir folder (the INBOX is the Maildir root) opened by descriptor."""

    def __init__(self, name: str, fd: int, uid: int) -> None:
        self.name = name
        self.fd = fd
        self.uid = uid
        self._subs: dict[str, int] = {}

    def sub(self, subdir: str) -> int:
        """Descriptor of ``cur``/``new``/``tmp``; raises FolderMissing or UnsafePathError."""
        if subdir not in ("cur", "new", "tmp"):
            raise ValueError(f"bad Maildir subdirectory {subdir!r}")
        if subdir not in self._subs:
            self._subs[subdir] = open_dir(subdir, dir_fd=self.fd, uid=self.uid)
        return self._subs[subdir]

    def close(self) -> None:
        """Close every descriptor of this folder."""
        for fd in [*self._subs.values(), self.fd]:
            os.close(fd)
        self._subs.clear()

    def names(self, subdir: str) -> list[str]:
        """Message names in ``subdir`` (hidden and malformed names left out)."""
        with os.scandir(self.sub(subdir)) as it:
            return [e.name for e in it if valid_message_name(e.name)]

    def lookup(self, subdir: str, name: str) -> MessageRef | str:
        """lstat one name: a MessageRef for a regular file owned by the user, else the reason
        (``vanished``, ``symlink``, ``not_regular``, ``foreign_owner``)."""
        try:
            st = os.stat(name, dir_fd=self.sub(subdir), follow_symlinks=False)
        except FileNotFoundError:
            return "vanished"
        if stat.S_ISLNK(st.st_mode):
            return "symlink"
        if not stat.S_ISREG(st.st_mode):
            return "not_regular"
        if st.st_uid != self.uid:
            return "foreign_owner"
        return MessageRef(subdir, name, st.st_dev, st.st_ino, st.st_size, st.st_nlink,
                          st.st_mtime_ns)

    def inspect(self, subdir: str, name: str, *, max_size: int = 0) -> MessageRef | str:
        """Check one message without opening it: a MessageRef, or why it must be left alone.

        Reasons: ``vanished``, ``symlink``, ``not_regular``, ``foreign_owner``, ``trashed``
        (flag T: the client is deleting it), ``oversize`` (over max_size bytes; 0 = no limit).
        """
        found = self.lookup(subdir, name)
        if isinstance(found, str):
            return found
        if "T" in (split_info(name)[1] or ""):
            return "trashed"
        if max_size and found.size > max_size:
            return "oversize"
        return found

    def read(self, ref: MessageRef, *, max_size: int = 0) -> Iterator[bytes]:
        """Yield the content of exactly ``ref``'s inode in chunks.

        Raises UnsafePathError if the name now holds another file or a non-regular one,
        FileNotFoundError if it vanished, MailopsError if it grew past max_size.
        """
        fd = os.open(ref.name, O_MSG, dir_fd=self.sub(ref.subdir))
        try:
            st = os.fstat(fd)
            now = MessageRef(ref.subdir, ref.name, st.st_dev, st.st_ino, st.st_size,
                             st.st_nlink, st.st_mtime_ns)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.uid or not ref.same(now):
                raise UnsafePathError(f"{ref.name!r} changed under us")
            total = 0
            while chunk := os.read(fd, CHUNK):
                total += len(chunk)
                if max_size and total > max_size:
                    raise MailopsError(f"{ref.name!r} grew past {max_size} bytes")
                yield chunk
        finally:
            os.close(fd)

    def locate(self, ref: MessageRef) -> MessageRef | None:
        """Find ``ref``'s inode again: under its name, or renamed by a client (new -> cur,
        flags changed) under the same base name. None if it is gone."""
        found = self.lookup(ref.subdir, ref.name)
        if isinstance(found, MessageRef) and ref.same(found):
            return found
        base = split_info(ref.name)[0]
        for subdir in ("cur", "new"):
            try:
                names = [n for n in self.names(subdir) if split_info(n)[0] == base]
            except FolderMissing:
                continue
            for name in names:
                found = self.lookup(subdir, name)
                if isinstance(found, MessageRef) and ref.same(found):
                    return found
        return None

    def inodes(self) -> set[tuple[int, int]]:
        """(dev, ino) of every name in ``cur/`` and ``new/`` (to spot hard-link copies)."""
        found: set[tuple[int, int]] = set()
        for subdir in ("cur", "new"):
            try:
                dev = os.fstat(self.sub(subdir)).st_dev
                with os.scandir(self.sub(subdir)) as it:
                    found.update((dev, e.inode()) for e in it)
            except FolderMissing:
                continue
        return found

    def unlink(self, ref: MessageRef) -> None:
        """Remove exactly this name (never a directory, never through a symlink)."""
        os.unlink(ref.name, dir_fd=self.sub(ref.subdir))

    def link_into(self, ref: MessageRef, dest: Folder, *, subdir: str = "cur",
                  add_flags: str = "") -> str:
        """Give ``ref``'s file a NEW unique name in ``dest/subdir``, keeping its flags plus
        ``add_flags``; returns the new name. Never replaces an existing name.

        A fresh base name, because Dovecot remembers expunged base names per folder: bringing
        one back logs "Expunged message reappeared". The caller unlinks the old name after
        fsyncing ``dest`` (link-then-unlink: a crash leaves a duplicate, never a loss).
        """
        flags = split_info(ref.name)[1] or ""
        for _ in range(3):
            new = with_flags(f"{unique_name(ref.size)}:2,{flags}", add_flags)
            try:
                os.link(ref.name, new, src_dir_fd=self.sub(ref.subdir),
                        dst_dir_fd=dest.sub(subdir), follow_symlinks=False)
                return new
            except FileExistsError:
                continue
        raise MailopsError(f"no free name for {ref.name!r} in {dest.name or 'INBOX'}")

    def write_message(self, data: bytes, *, subdir: str = "new", flags: str | None = None,
                      mtime: float | None = None, mode: int = 0o600) -> str:
        """Deliver ``data`` as a new message: tmp/ (O_EXCL), fsync, mtime, rename into subdir.

        ``flags`` None gives no info suffix (right for new/); returns the final name.
        """
        tmp = unique_name(len(data))
        tmp_fd = self.sub("tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=tmp_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        final = tmp if flags is None else f"{tmp}:2,{''.join(sorted(set(flags)))}"
        try:
            os.rename(tmp, final, src_dir_fd=tmp_fd, dst_dir_fd=self.sub(subdir))
        except OSError:
            os.unlink(tmp, dir_fd=tmp_fd)
            raise
        fsync_dir(self.sub(subdir))
        return final

    def replace_message(self, ref: MessageRef, data: bytes, *, add_flags: str = "") -> str:
        """Replace a message's content the way Dovecot tolerates: the new content under a new
        unique name (same subdir, flags plus ``add_flags``, mode and mtime), then unlink the old.

        Raises FileNotFoundError if ``ref`` is gone, UnsafePathError if it changed.
        """
        found = self.locate(ref)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "message vanished", ref.name)
        st = os.stat(found.name, dir_fd=self.sub(found.subdir), follow_symlinks=False)
        flags = split_info(found.name)[1]
        if flags is not None or add_flags:
            flags = "".join(sorted(set(flags or "") | set(add_flags)))
        subdir = "cur" if flags is not None else found.subdir
        new = self.write_message(data, subdir=subdir, flags=flags, mtime=st.st_mtime,
                                 mode=stat.S_IMODE(st.st_mode))
        self.unlink(found)
        fsync_dir(self.sub(found.subdir))
        return new


class Maildir:
    """A user's Maildir opened safely; folders are opened from it by name."""

    def __init__(self, fd: int, uid: int) -> None:
        self.fd = fd
        self.uid = uid

    @classmethod
    def open(cls, home: str, relpath: str, uid: int) -> Maildir:
        """Open ``home/relpath``: the home as passwd says, each component below it O_NOFOLLOW
        and owned by ``uid``. Raises FolderMissing, UnsafePathError or OSError."""
        parts = [p for p in relpath.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnsafePathError(f"Maildir path {relpath!r} leaves the home directory")
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # a root-owned home (chroot-style) is as trustworthy as the user's own
            if os.fstat(fd).st_uid not in (uid, 0):
                raise UnsafePathError(f"home {home} is not owned by uid {uid}")
            for part in parts:
                nxt = open_dir(part, dir_fd=fd, uid=uid)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, uid)

    def folder(self, name: str) -> Folder:
        """Open a folder: ``""`` or ``INBOX`` is the Maildir itself, else a Maildir++ name such
        as ``.INBOX.Spam``. Raises FolderMissing, UnsafePathError, ValueError (bad name)."""
        if name in ("", "INBOX"):
            return Folder("", os.dup(self.fd), self.uid)
        check_folder_name(name)
        return Folder(name, open_dir(name, dir_fd=self.fd, uid=self.uid), self.uid)

    def ensure_folder(self, name: str) -> Folder:
        """Open a folder, creating it (and cur/new/tmp, mode 0700) first if it does not exist."""
        check_folder_name(name)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=self.fd)
        folder = self.folder(name)
        for subdir in ("tmp", "new", "cur"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(subdir, 0o700, dir_fd=folder.fd)
        return folder

    def close(self) -> None:
        """Close the Maildir's descriptor."""
        os.close(self.fd)

    def __enter__(self) -> Maildir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
