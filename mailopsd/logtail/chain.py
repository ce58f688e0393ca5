"""The LogFollower's way along rotated copies: resuming a saved position in whichever copy
holds it now (maybe compressed), then every newer copy, then the live file; truncation
(copytruncate); what is gone for good reported once (``log_data_lost``). A mixin: the state it
uses is the LogFollower's own (see ``follow.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mailopsd.logtail.reader import Reader, first_line_hash
from mailopsd.logtail.rotated import StreamReader, catch_up, open_copy


class RotationChain:
    """Mixin for LogFollower: rotated copies read in order; see the module docstring."""

    # the LogFollower's attributes and methods this mixin uses
    name: str
    path: str
    max_line: int
    start_at_end: bool
    log: Any
    _cur: Reader | None
    _later: list[str]
    _saved_at: float
    _resumed: bool
    _open_path: Callable[[int], Reader | None]
    _save: Callable[[Reader], None]
    _drain: Callable[..., tuple[int, bool]]
    _retire: Callable[[Reader], None]
    _note_missing: Callable[[str | None], None]
    _note_present: Callable[[], None]
    _warn_path: Callable[[str], None]
    _conn: Callable[[], Any]
    _later_ids: dict[str, tuple[int, int]]
    _moved: bool
    _waiting_since: float | None
    _save_waiting: Callable[[float], None]

    def _on_truncated(self, cur: Reader) -> int:
        """copytruncate (or ``: > log``): read the unread tail from the copy (and any newer
        copies, if it was truncated more than once since), then the file again from 0."""
        found = catch_up(self.path, None, cur.hash, cur.offset, self.max_line, self._saved_at)
        self._ambiguous(found)
        self.log.warning("log_truncated", name=self.name, path=self.path, offset=cur.offset,
                         recovered_from=found.reader.path if found.reader else None,
                         later=found.later)
        cur.close()
        self._cur = None
        if found.reader is None:
            self._lost(cur.ino, cur.offset, cur.pos,
                       "truncated, and no copy holds the unread tail")
            found.later = []  # without the copy we cannot know which copies are newer
        return self._enter_chain(found.reader, found.later)

    def _enter_chain(self, reader: Reader | None, later: list[str]) -> int:
        """Read ``reader`` (a rotated copy) from where it stands, then ``later``, then the live
        file (poll_once's _check_rotated moves along the chain)."""
        self._later = list(later)
        if reader is None:
            reader = self._next_copy()
        if reader is None:
            self._cur = self._open_path(0)
            if self._cur is not None:
                self._save(self._cur)
            return 0
        self._cur = reader
        self._save(reader)  # a crash now resumes in the copy
        return self._drain(reader)[0]

    def _ambiguous(self, found: Any) -> None:
        if found.ambiguous:
            self.log.warning("log_position_ambiguous", name=self.name, path=self.path,
                             chosen=found.reader.path if found.reader else None,
                             message="several rotated copies start with the same line: the "
                                     "newest was taken (lines may be skipped, none read twice)")

    def _next_copy(self) -> Reader | None:
        """Open the next rotated copy still to read; unreadable ones are reported lost. If
        logrotate renamed it since it was listed (another file has the name now), nothing is
        opened and ``_moved`` is set: the caller lists the copies again."""
        self._moved = False
        while self._later:
            p = self._later.pop(0)
            r = open_copy(p, 0, self.max_line)
            seen = self._later_ids.get(p)
            if r is not None and seen is not None and (r.dev, r.ino) != seen:
                r.close()
                self._later, self._moved = [], True
                return None
            if r is not None:
                self.log.info("log_catching_up", name=self.name, path=self.path, file=p)
                return r
            self._lost(None, 0, None, f"cannot open the rotated copy {p}")
        return None

    def _lost(self, inode: int | None, offset: int, size: int | None, why: str) -> None:
        """One event for data gone for good, with the bytes known to be lost."""
        self.log.warning("log_data_lost", name=self.name, path=self.path, inode=inode,
                         offset=offset, bytes=None if size is None else max(0, size - offset),
                         why=why)

    def _check_rotated(self) -> tuple[int, bool]:
        """The name now points to another file: drain the old one to EOF, read any rotated
        copies newer than it (missed rotations), then switch to the live file.
        Returns (lines delivered, whether it moved to another file)."""
        cur = self._cur
        if cur is None:
            return 0, False
        if cur.path != self.path:
            return self._leave_copy(cur)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._note_missing(cur.path)
            return 0, False  # renamed with nocreate: read the old file until a new one shows
        except OSError as exc:
            self._warn_path(str(exc))
            return 0, False
        self._note_present()
        if (st.st_dev, st.st_ino) == (cur.dev, cur.ino):
            return 0, False
        n = self._drain(cur)[0]  # whatever was written to the old file up to now
        # rotated more than once since we last looked (slow, or a burst of rotations)?
        found = catch_up(self.path, (cur.dev, cur.ino), cur.hash, 0, self.max_line,
                         self._saved_at)
        self._ambiguous(found)
        if found.reader is not None:
            found.reader.close()
        nxt = None
        if found.later:
            self._later, self._later_ids = list(found.later), found.ids
            nxt = self._next_copy()
            if nxt is None and self._moved:
                return n, True  # renamed under us: list again before switching
        new = nxt or self._open_path(0)
        if new is None:
            return n, False
        if nxt is None and self._newer_copies(cur):
            new.close()  # logrotate ran again between the listing and the open: list again
            return n, True
        self.log.info("log_rotated", name=self.name, path=self.path, old_inode=cur.ino,
                      new_inode=new.ino, old_offset=cur.offset,
                      missed_copies=len(found.later))
        self._retire(cur)
        self._cur = new
        self._save(new)
        return n + self._drain(new, check=new.path == self.path)[0], True

    def _newer_copies(self, cur: Reader) -> bool:
        """Whether rotated copies newer than ``cur`` exist now (checked again after opening
        the live file: a rotation in between would otherwise skip a whole file)."""
        plain = not isinstance(cur, StreamReader)
        found = catch_up(self.path, (cur.dev, cur.ino) if plain else None, cur.hash, 0,
                         self.max_line, self._saved_at)
        if found.reader is not None:
            found.reader.close()
        return found.reader is not None and bool(found.later)

    def _leave_copy(self, cur: Reader) -> tuple[int, bool]:
        """``cur`` is a rotated copy read to its end: go on to the next copy or the live file."""
        if isinstance(cur, StreamReader) and cur.error is not None:
            self._lost(cur.ino, cur.offset, None,
                       f"the compressed copy {cur.path} is damaged: {cur.error}")
        # logrotate may have run while this copy was read: names shift (mainlog.1 is another
        # file now), so find this copy again and take what is newer than it NOW
        plain = not isinstance(cur, StreamReader)
        found = catch_up(self.path, (cur.dev, cur.ino) if plain else None, cur.hash, 0,
                         self.max_line, self._saved_at)
        self._ambiguous(found)
        if found.reader is not None:
            found.reader.close()
        self._later, self._later_ids = list(found.later), found.ids
        new = self._next_copy()
        if new is None and self._moved:
            return 0, True  # renamed under us: poll_once comes back here, listing again
        if new is None:
            new = self._open_path(0)
            if new is None:
                self._note_missing(cur.path)
                return 0, False
            if (new.dev, new.ino) == (cur.dev, cur.ino):  # the copy was renamed back: go on
                new.close()
                return 0, False
            if self._newer_copies(cur):
                new.close()  # logrotate ran again between the listing and the open
                return 0, True
        if isinstance(cur, StreamReader):
            cur.close()  # compressed: nobody writes to it any more
        else:
            self._retire(cur)  # an Exim process may still append to mainlog.1 a moment
        self._cur = new
        self._save(new)
        return self._drain(new, check=new.path == self.path)[0], True

    def _resume(self) -> None:
        """Position the reader where the last run stopped (see the module docstring)."""
        self._resumed = True
        row = self._conn().execute("SELECT * FROM log_positions WHERE name = ?",
                                   (self.name,)).fetchone()
        if row is not None and row["path"] != self.path:
            row = None  # the configured file changed: its old position means nothing
        if row is not None and row["ino"] == 0:
            # the last run was still waiting for the log to appear: what logrotate made of it
            # since then is read first (poll_once), as if that run had never stopped
            self._waiting_since = row["updated"]
            row = None
        if row is None:
            self._cur = None if self._waiting_since is not None else self._open_path(0)
            if self._cur is not None:
                if self.start_at_end:
                    self._cur.seek_end()
                self._save(self._cur)
            elif self._waiting_since is not None:
                self._save_waiting(self._waiting_since)
            self.log.info("log_follow_started", name=self.name, path=self.path,
                          offset=self._cur.offset if self._cur else None)
            return
        dev, ino, offset, h = row["dev"], row["ino"], row["offset"], row["first_line_hash"]
        self._saved_at = row["updated"]
        cur = self._open_path(offset)
        dev_ino: tuple[int, int] | None = (dev, ino)
        if cur is not None and (cur.dev, cur.ino) == (dev, ino):
            size = os.fstat(cur.fd).st_size
            now_hash = first_line_hash(cur.fd, self.max_line)
            if size >= offset and (not h or now_hash in (h, "")):
                cur.hash = h or now_hash
                self._cur = cur
                self.log.info("log_follow_resumed", name=self.name, path=self.path,
                              offset=offset)
                return
            dev_ino = None  # truncated while stopped (copytruncate): only a copy holds the tail
        if cur is not None:
            cur.close()
        # rotated (maybe several times, maybe compressed) while stopped: the file we were
        # reading has another name now, and newer copies may hold lines nobody read
        found = catch_up(self.path, dev_ino, h, offset, self.max_line, self._saved_at)
        self._ambiguous(found)
        if found.reader is not None:
            self.log.info("log_follow_resumed", name=self.name, path=found.reader.path,
                          offset=offset, rotated=True, later=found.later)
            self._later, self._later_ids = list(found.later), found.ids
            self._cur = found.reader  # drained first; then on along the chain to the live file
            return
        self._lost(ino, offset, row["size"],
                   "the file last read was rotated away while mailopsd was stopped")
        if found.later:
            self.log.info("log_follow_resumed", name=self.name, path=found.later[0], offset=0,
                          rotated=True, later=found.later[1:])
        self._later, self._later_ids = list(found.later), found.ids
        self._cur = self._next_copy() or self._open_path(0)
        if self._cur is not None:
            self._save(self._cur)
