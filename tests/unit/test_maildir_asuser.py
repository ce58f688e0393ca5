"""The as-user worker protocol (mailopsd.core.asuser) and staging (mailopsd.spam.staging)."""

from __future__ import annotations

import os
import pwd
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailopsd.core.asuser import AsUserError, Channel, _FrameReader, drop_privileges, run_as
from mailopsd.core.users import Account
from mailopsd.spam.staging import Staging, remove_leftovers


class Sink:
    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], bytes, bool]] = []
        self._meta: dict[str, Any] = {}
        self._data = b""

    def begin(self, meta: dict[str, Any]) -> None:
        self._meta, self._data = meta, b""

    def data(self, chunk: bytes) -> None:
        self._data += chunk

    def end(self, ok: bool, info: dict[str, Any]) -> None:
        self.items.append((self._meta, self._data, ok))


def exchange(write: Any, sink: Sink | None = None) -> tuple[bool, dict[str, Any]] | None:
    """Run ``write(channel)`` in a thread against a reader on a pipe."""
    r, w = os.pipe()

    def writer() -> None:
        try:
            write(Channel(w))
        finally:
            os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    try:
        return _FrameReader(r, sink).run(time.monotonic() + 10, None)
    finally:
        t.join()
        os.close(r)


def test_items_stream_in_chunks_and_a_failed_read_is_reported() -> None:
    def chunks_then_fail() -> Any:
        yield b"partial"
        raise OSError("gone")

    def write(ch: Channel) -> None:
        assert ch.item({"n": 1}, [b"a" * 5_000_000, b"bc"])
        assert not ch.item({"n": 2}, chunks_then_fail())
        ch._json(b"R", {"done": True})

    sink = Sink()
    assert exchange(write, sink) == (False, {"done": True})
    assert [(m["n"], len(d), ok) for m, d, ok in sink.items] == [(1, 5_000_002, True),
                                                                  (2, 7, False)]


def test_an_error_frame_or_a_silent_exit_is_reported() -> None:
    assert exchange(lambda ch: ch._json(b"X", {"error": "boom"})) == (True, {"error": "boom"})
    assert exchange(lambda ch: None) is None


@pytest.mark.parametrize("frames", [
    [(b"D", b"data outside an item")],
    [(b"Z", b"{}")],
    [(b"R", b"[1, 2]")],
])
def test_protocol_violations_are_refused(frames: list[tuple[bytes, bytes]]) -> None:
    def write(ch: Channel) -> None:
        for kind, payload in frames:
            ch._frame(kind, payload)

    with pytest.raises(AsUserError):
        exchange(write, Sink())


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    def write(ch: Channel) -> None:
        os.write(ch.fd, struct.pack(">cI", b"H", 1 << 30))

    with pytest.raises(AsUserError):
        exchange(write, Sink())


def test_never_acts_as_root_and_never_runs_an_unknown_operation() -> None:
    with pytest.raises(AsUserError):
        drop_privileges(0, 0)
    with pytest.raises(AsUserError):
        run_as(Account("x", 1000, 1000, "/"), "shell.exec", {}, timeout=5)


def test_run_as_runs_the_operation_in_a_worker(tmp_path: Path) -> None:
    pw = pwd.getpwuid(os.getuid())
    me = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, str(tmp_path))
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "Maildir" / ".Spam" / sub).mkdir(parents=True)
    (tmp_path / "Maildir" / ".Spam" / "new" / "1.M1P1.h").write_bytes(b"spam!")
    args = {"home": str(tmp_path), "maildir": "Maildir", "classes": {"spam": [".Spam"]}}
    sink = Sink()
    if os.geteuid() == 0:  # root's own mail is never touched: the worker refuses uid 0
        with pytest.raises(AsUserError, match="root"):
            run_as(me, "maildir.collect", args, timeout=30, sink=sink)
        return
    res = run_as(me, "maildir.collect", args, timeout=30, sink=sink)
    assert res["listed"] == {"spam": 1}
    assert [(d, ok) for _, d, ok in sink.items] == [(b"spam!", True)]


def test_staging_files_are_private_to_the_reader_and_removed(tmp_path: Path) -> None:
    pw = pwd.getpwuid(os.getuid())
    reader = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, "/")
    staging = Staging(str(tmp_path), "mailopsd-test.", reader)
    path = staging.write_file("m", b"copy")
    st = os.stat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o400, reader.uid)
    assert stat.S_IMODE(os.stat(staging.path).st_mode) == 0o711
    assert Path(path).read_bytes() == b"copy"
    staging.remove()
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_run_are_removed_but_not_other_owners_dirs(tmp_path: Path) -> None:
    (tmp_path / "mailopsd-test.old").mkdir()
    (tmp_path / "mailopsd-test.old" / "m0000001").write_bytes(b"x")
    (tmp_path / "unrelated").mkdir()
    removed = remove_leftovers(str(tmp_path), "mailopsd-test.")
    if os.geteuid() == 0:
        assert removed == [str(tmp_path / "mailopsd-test.old")]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]
        (tmp_path / "mailopsd-test.user").mkdir()
        os.chown(tmp_path / "mailopsd-test.user", 65534, 65534)  # a user's look-alike
        assert remove_leftovers(str(tmp_path), "mailopsd-test.") == []
    else:
        assert removed == []


def test_staging_reports_a_directory_the_reader_cannot_traverse(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    stranger = Account("stranger", 54321, 54321, "/")
    staging = Staging(str(private), "mailopsd-test.", stranger)
    try:
        assert staging.unreachable_by(stranger) == str(private)
        private.chmod(0o711)
        blocked = staging.unreachable_by(stranger)  # pytest's tmp root above may still be 0700
        assert blocked is None or str(private).startswith(blocked + "/")
    finally:
        staging.remove()
