"""Rewriting a message in place of the old one, for a ROOT caller (the copy-to-Sent fixer).

A worker process per message (mailopsd.core.asuser) costs tens of milliseconds before any work, too
slow for the fixer's latency target, so these run in the daemon as root. They are root-safe
because every step goes through a Folder's verified descriptors (O_NOFOLLOW, owner checks) and the
message itself must be a regular file of the user with exactly one link. The new content gets a
NEW unique name (Dovecot must never see changed content under a name it indexed), is in place
before the old name is unlinked (a crash leaves a duplicate, never a loss), and keeps the old
file's owner, mode and mtime (the IMAP INTERNALDATE).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from mailopsd.core.errors import UnsafePathError
from mailopsd.maildir.folder import O_MSG, Folder, MessageRef, fsync_dir
from mailopsd.maildir.names import split_info, unique_name, with_flags

_RENAME_NOREPLACE = 1


def _libc_renameat2() -> Any:
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_renameat2: list[Any] = []  # resolved on first use (keeps ctypes out of the as-user worker)


def rename_noreplace(src: str, src_fd: int, dst: str, dst_fd: int) -> None:
    """rename(2) between directory fds that raises FileExistsError instead of replacing."""
    if not _renameat2:
        _renameat2.append(_libc_renameat2())
    if _renameat2[0] is not None:
        import ctypes

        if _renameat2[0](src_fd, os.fsencode(src), dst_fd, os.fsencode(dst),
                         _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), dst)
    try:  # no renameat2 on this filesystem: check, then rename (a tiny race, same owner)
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
        raise FileExistsError(errno.EEXIST, "file exists", dst)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def open_exact(folder: Folder, ref: MessageRef, *, max_size: int = 0) -> tuple[int, os.stat_result]:
    """Open exactly ``ref``'s inode read-only; returns (fd, fstat). The caller closes fd.

    Raises FileNotFoundError if the name is gone, UnsafePathError if it is a symlink, another
    inode, not a regular file, not the user's, hard-linked (st_nlink != 1) or over max_size.
    """
    try:
        fd = os.open(ref.name, O_MSG, dir_fd=folder.sub(ref.subdir))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{ref.subdir}/{ref.name} is a symlink") from None
        raise
    st = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode)
               else "changed under us" if (st.st_dev, st.st_ino) != (ref.dev, ref.ino)
               else f"is owned by uid {st.st_uid}" if st.st_uid != folder.uid
               else f"has {st.st_nlink} links" if st.st_nlink != 1
               else f"is larger than {max_size} bytes" if max_size and st.st_size > max_size
               else "")
    if problem:
        os.close(fd)
        raise UnsafePathError(f"{ref.subdir}/{ref.name} {problem}")
    return fd, st


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to ``dst`` in the kernel (no buffers)."""
    while count > 0:
        try:
            n = os.copy_file_range(src, dst, min(count, 1 << 30), offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(dst, src, offset, min(count, 1 << 30))
        if n == 0:
            raise OSError(errno.EIO, "message shrank while being copied")
        offset += n
        count -= n


def replace_streaming(folder: Folder, ref: MessageRef, src_fd: int, st: os.stat_result,
                      head: bytes, body_offset: int, *, add_flags: str = "",
                      defer: list[MessageRef] | None = None) -> str | None:
    """Replace a message by ``head`` + its own bytes from ``body_offset``, never in place.

    Writes ``tmp/<new unique name>`` (O_EXCL, owner, group, mode and mtime of the original,
    fsync), renames it (no replace) to ``cur/<new>:2,<flags + add_flags>`` with the flags the
    message has NOW (Dovecot may have moved it to cur/ or a client set flags), fsyncs cur/,
    then unlinks the old name and fsyncs its directory. ``src_fd`` is the message opened with
    open_exact. With ``defer`` (a batch), the old message is appended to it instead of being
    unlinked: the caller runs finish_batch() later (one set of directory fsyncs per batch).
    Returns the new name in cur/, or None if the original vanished first.
    Raises OSError on I/O failure (the tmp file is removed).
    """
    import contextlib

    body_len = max(0, st.st_size - body_offset)
    tmp = unique_name(len(head) + body_len)
    tmp_fd = folder.sub("tmp")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=tmp_fd)
    placed = False
    try:
        try:
            os.fchown(out, st.st_uid, st.st_gid)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            view = memoryview(head)
            while view:
                view = view[os.write(out, view):]
            _copy_range(src_fd, out, body_offset, body_len)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))  # IMAP INTERNALDATE
            os.fsync(out)
        finally:
            os.close(out)
        now = folder.locate(ref)
        if now is None:
            return None
        final = with_flags(f"{tmp}:2,{split_info(now.name)[1] or ''}", add_flags)
        rename_noreplace(tmp, tmp_fd, final, folder.sub("cur"))
        placed = True
        if defer is not None:
            defer.append(now)
        else:
            fsync_dir(folder.sub("cur"))  # the new name is durable before the old one goes
            _unlink_current(folder, now)
            fsync_dir(folder.sub(now.subdir))
        return final
    finally:
        if not placed:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=tmp_fd)


def _unlink_current(folder: Folder, ref: MessageRef) -> None:
    """Unlink ``ref``'s inode under whatever name it has now (Dovecot may rename it)."""
    for _ in range(3):
        try:
            folder.unlink(ref)
            return
        except FileNotFoundError:
            again = folder.locate(ref)
            if again is None:
                return
            ref = again


def finish_batch(folder: Folder, replaced: list[MessageRef]) -> None:
    """End a batch of deferred replace_streaming/rename_with_flags calls: fsync cur/ (the new
    names are durable), THEN unlink the replaced originals, then fsync new/ and cur/."""
    fsync_dir(folder.sub("cur"))
    for ref in replaced:
        _unlink_current(folder, ref)
    fsync_dir(folder.sub("new"))
    fsync_dir(folder.sub("cur"))
    replaced.clear()


def rename_with_flags(folder: Folder, ref: MessageRef, add_flags: str, *,
                      sync: bool = True) -> str | None:
    """Rename a message to ``cur/<base>:2,<its flags + add_flags>`` (same content, same UID).

    Never replaces another file. ``sync=False`` leaves the directory fsyncs to finish_batch()
    (a rename is atomic: a crash keeps one of the two names). Returns the name in cur/
    (unchanged if nothing to add), or None if the message vanished. Raises OSError.
    """
    for _ in range(3):
        now = folder.locate(ref)
        if now is None:
            return None
        final = with_flags(now.name if ":" in now.name else f"{now.name}:2,", add_flags)
        if now.subdir == "cur" and final == now.name:
            return final
        try:
            rename_noreplace(now.name, folder.sub(now.subdir), final, folder.sub("cur"))
        except FileNotFoundError:
            continue  # renamed in between: look again
        if sync:
            fsync_dir(folder.sub("cur"))
            if now.subdir != "cur":
                fsync_dir(folder.sub(now.subdir))
        return final
    return None
