"""LogFollower against real files: rename rotation (nocreate), copytruncate, replaced files.

Writers behave like Exim: each line is one O_APPEND write, and the log is opened by name
before each write (so after a rename the next write creates the new file), except the
"straggler" writes, which model an Exim process that opened the old file just before the rename.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower


class Sink:
    """on_lines target that records every delivered line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, lines: list[str]) -> None:
        with self.lock:
            self.lines.extend(lines)


def write_lines(path: Path, lines: list[str]) -> None:
    """Exim-like: open by name (creating it), one write per line, close."""
    for line in lines:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def numbered(prefix: str, n: int) -> list[str]:
    return [f"2026-11-24 10:00:00 {prefix} line {i}" for i in range(n)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, StateDB, Sink]]:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    yield log_dir / "mainlog", StateDB(str(tmp_path / "state")), Sink()


def follower(log: Path, state: StateDB, sink: Sink, **kw: float) -> LogFollower:
    return LogFollower("test:" + str(log), str(log), state, sink, **kw)  # type: ignore[arg-type]


def test_rename_rotation_nocreate_loses_no_line(env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    first = numbered("a", 100)
    write_lines(log, first)
    assert f.poll_once() == 100
    unread = numbered("b", 50)
    write_lines(log, unread)
    os.rename(log, log.with_name("mainlog.1"))  # logrotate, nocreate: no new file yet
    old_fd = os.open(log.with_name("mainlog.1"), os.O_WRONLY | os.O_APPEND)
    try:
        straggle1 = numbered("c", 20)  # an Exim process that opened before the rename
        for line in straggle1:
            os.write(old_fd, (line + "\n").encode())
        assert f.poll_once() == 70  # the name is missing: the old file is drained
        assert f.poll_once() == 0
        new = numbered("d", 30)
        write_lines(log, new)  # Exim's next write creates the new file
        straggle2 = numbered("e", 5)
        for line in straggle2:
            os.write(old_fd, (line + "\n").encode())
        assert f.poll_once() == 35  # old file to EOF first, then the new one
        straggle3 = numbered("f", 3)  # still inside the grace period: not lost either
        for line in straggle3:
            os.write(old_fd, (line + "\n").encode())
        more = numbered("g", 7)
        write_lines(log, more)
        assert f.poll_once() == 10
    finally:
        os.close(old_fd)
        f.stop(1)
    expected = first + unread + straggle1 + straggle2 + new + straggle3 + more
    assert sorted(sink.lines) == sorted(expected)
    assert len(sink.lines) == len(set(sink.lines)) == 215
    # within each file, order is kept
    assert [x for x in sink.lines if " d " in x] == new


def test_copytruncate_recovers_the_unread_tail_from_the_copy(
        env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    write_lines(log, numbered("a", 100))
    assert f.poll_once() == 100
    tail = numbered("b", 20)
    write_lines(log, tail)
    shutil.copyfile(log, log.with_name("mainlog.1"))  # logrotate copytruncate
    os.truncate(log, 0)
    new = numbered("c", 10)
    write_lines(log, new)
    assert f.poll_once() == 30
    f.stop(1)
    assert sink.lines[100:] == tail + new


def test_copytruncate_regrown_past_the_offset_is_detected(
        env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    write_lines(log, numbered("a", 10))
    assert f.poll_once() == 10
    tail = numbered("b", 3)
    write_lines(log, tail)
    shutil.copyfile(log, log.with_name("mainlog.1"))
    os.truncate(log, 0)
    new = [f"2026-11-25 00:00:{i % 60:02d} regrown line {i} " + "x" * 50 for i in range(40)]
    write_lines(log, new)  # bigger than before: size alone cannot show the truncation
    assert os.path.getsize(log) > 13 * 40
    assert f.poll_once() == 43
    f.stop(1)
    assert sink.lines[10:] == tail + new


def test_truncation_without_a_copy_starts_again_at_zero(env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    write_lines(log, numbered("a", 5))
    assert f.poll_once() == 5
    os.truncate(log, 0)  # `: > mainlog`
    write_lines(log, ["x"])
    assert f.poll_once() == 1
    f.stop(1)
    assert sink.lines == [*numbered("a", 5), "x"]


def test_replaced_file_is_read_from_its_start(env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    write_lines(log, numbered("a", 5))
    assert f.poll_once() == 5
    unread = numbered("b", 2)
    write_lines(log, unread)
    tmp = log.with_name("mainlog.new")
    write_lines(tmp, numbered("c", 4))
    os.replace(tmp, log)  # a new inode under the same name; the old one is unlinked
    assert f.poll_once() == 6
    f.stop(1)
    assert sink.lines == numbered("a", 5) + unread + numbered("c", 4)


def test_live_rotations_with_a_concurrent_writer_deliver_every_line_once(
        env: tuple[Path, StateDB, Sink]) -> None:
    """The real thread (watchdog + stat fallback) while a writer thread and logrotate race it.

    The writer never stops; each rotation renames the log (nocreate) while lines are being
    written, so lines land in the old file after the rename and the new file appears at the
    next write, as with Exim. Rotations are daily in real life: the next one waits until the
    follower has moved to the new file.
    """
    log, state, sink = env
    total = 4000
    expected = [f"2026-11-24 10:00:00 live line {i}" for i in range(total)]
    write_lines(log, expected[:1])
    f = follower(log, state, sink, poll_interval=0.05)
    f.start()
    written = threading.Event()

    def writer() -> None:
        for i in range(1, total):
            write_lines(log, expected[i:i + 1])
        written.set()

    t = threading.Thread(target=writer)
    t.start()
    rotations = 0
    try:
        while not written.is_set() and rotations < 6:
            rotated = log.with_name("mainlog.1")
            if rotated.exists():
                os.replace(rotated, log.with_name("mainlog.2"))
            os.rename(log, rotated)
            rotations += 1
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not written.is_set():
                pos = f.position()
                try:
                    if pos is not None and pos[1] == os.stat(log).st_ino:
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.002)
        t.join(30)
        deadline = time.monotonic() + 20
        while len(sink.lines) < total and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        t.join(30)
        f.stop(2)
    assert not f.alive()
    assert rotations >= 2
    assert len(sink.lines) == total
    assert sorted(sink.lines) == sorted(expected)


def test_live_thread_delivers_an_appended_line_quickly(env: tuple[Path, StateDB, Sink]) -> None:
    """inotify wakes the reader: with a 30 s stat interval the line still arrives at once."""
    log, state, sink = env
    write_lines(log, ["old"])
    f = follower(log, state, sink, poll_interval=30.0)
    f.start()
    try:
        deadline = time.monotonic() + 5
        while not sink.lines and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sink.lines == ["old"]
        t0 = time.monotonic()
        write_lines(log, ["new line"])
        while len(sink.lines) < 2 and time.monotonic() < t0 + 5:
            time.sleep(0.002)
        latency = time.monotonic() - t0
        assert sink.lines == ["old", "new line"]
        assert latency < 1.0, latency
        assert f.alive()
    finally:
        f.stop(2)
    assert not f.alive()


def test_file_created_after_start_is_followed(env: tuple[Path, StateDB, Sink]) -> None:
    log, state, sink = env
    f = follower(log, state, sink)
    assert f.poll_once() == 0
    write_lines(log, ["first"])
    assert f.poll_once() == 1
    f.stop(1)
    assert sink.lines == ["first"]
