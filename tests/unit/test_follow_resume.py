"""LogFollower: saved positions (restart, rotation while stopped), partial and over-long lines,
failing consumers, hostile bytes. Real files on disk, a real state database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def lines(prefix: str, n: int) -> str:
    return "".join(f"2026-11-24 10:00:00 {prefix} {i}\n" for i in range(n))


def expect(prefix: str, n: int) -> list[str]:
    return lines(prefix, n).splitlines()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, StateDB]]:
    (tmp_path / "log").mkdir()
    yield tmp_path / "log" / "mainlog", StateDB(str(tmp_path / "state"))


def new(log: Path, state: StateDB, sink: Sink, **kw: object) -> LogFollower:
    return LogFollower("blocker:" + str(log), str(log), state, sink, **kw)  # type: ignore[arg-type]


def test_restart_resumes_exactly(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 10))
    f = new(log, state, sink)
    assert f.poll_once() == 10
    f.stop(1)
    append(log, lines("b", 5))
    f2 = new(log, state, sink)
    assert f2.poll_once() == 5
    assert f2.poll_once() == 0
    f2.stop(1)
    assert sink.lines == expect("a", 10) + expect("b", 5)


def test_partial_line_waits_for_its_newline_even_across_a_restart(
        env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, "2026-11-24 10:00:00 one\n2026-11-24 10:00:01 tw")
    f = new(log, state, sink)
    assert f.poll_once() == 1
    append(log, "o, still not")
    assert f.poll_once() == 0
    f.stop(1)
    f2 = new(log, state, sink)
    assert f2.poll_once() == 0
    append(log, " finished\n")
    assert f2.poll_once() == 1
    f2.stop(1)
    assert sink.lines == ["2026-11-24 10:00:00 one",
                          "2026-11-24 10:00:01 two, still not finished"]


def test_rotation_while_stopped_reads_the_rest_of_mainlog_1_first(
        env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 100))
    f = new(log, state, sink)
    assert f.poll_once() == 100
    f.stop(1)
    append(log, lines("b", 20))  # written while the daemon was down ...
    os.rename(log, log.with_name("mainlog.1"))  # ... then logrotate ran
    append(log, lines("c", 30))
    f2 = new(log, state, sink)
    assert f2.poll_once() == 50
    f2.stop(1)
    assert sink.lines == expect("a", 100) + expect("b", 20) + expect("c", 30)


def test_rotation_while_stopped_with_no_new_file_yet(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 3))
    f = new(log, state, sink)
    f.poll_once()
    f.stop(1)
    append(log, lines("b", 2))
    os.rename(log, log.with_name("mainlog.1"))
    f2 = new(log, state, sink)
    assert f2.poll_once() == 2
    append(log, lines("c", 1))
    assert f2.poll_once() == 1
    f2.stop(1)
    assert sink.lines == expect("a", 3) + expect("b", 2) + expect("c", 1)


def test_copytruncate_while_stopped_recovers_from_the_copy(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 10))
    f = new(log, state, sink)
    f.poll_once()
    f.stop(1)
    append(log, lines("b", 4))
    shutil.copyfile(log, log.with_name("mainlog.1"))
    os.truncate(log, 0)
    append(log, lines("c", 3))
    f2 = new(log, state, sink)
    assert f2.poll_once() == 7
    f2.stop(1)
    assert sink.lines == expect("a", 10) + expect("b", 4) + expect("c", 3)


def test_lost_position_warns_and_starts_at_the_new_file(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 3))
    f = new(log, state, sink)
    f.poll_once()
    f.stop(1)
    os.rename(log, log.with_name("mainlog.1"))
    os.remove(log.with_name("mainlog.1"))  # compressed away by a second rotation
    append(log, lines("c", 2))
    with capture_logs() as events:
        f2 = new(log, state, sink)
        assert f2.poll_once() == 2
        f2.stop(1)
    [lost] = [e for e in events if e["event"] == "log_data_lost"]
    assert lost["bytes"] == 0  # everything known was read; what came later is unknowable
    assert sink.lines == expect("a", 3) + expect("c", 2)


def test_inode_reused_by_another_file_is_not_trusted(env: tuple[Path, StateDB]) -> None:
    """Same inode number, different first line: the saved offset is not applied to it."""
    log, state = env
    sink = Sink()
    append(log, lines("a", 3))
    f = new(log, state, sink)
    f.poll_once()
    f.stop(1)
    with open(log, "r+b") as fh:  # rewritten in place, same inode, longer than the offset
        fh.write(lines("z", 6).encode())
    f2 = new(log, state, sink)
    assert f2.poll_once() == 6
    f2.stop(1)
    assert sink.lines == expect("a", 3) + expect("z", 6)


def test_consumer_failure_redelivers_the_same_lines(env: tuple[Path, StateDB]) -> None:
    log, state = env
    got: list[str] = []
    calls = {"n": 0}

    def flaky(batch: list[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database locked")
        got.extend(batch)

    append(log, lines("a", 4))
    f = LogFollower("x", str(log), state, flaky)
    with pytest.raises(RuntimeError):
        f.poll_once()
    assert f.poll_once() == 4
    f.stop(1)
    assert got == expect("a", 4)


def test_position_is_saved_only_after_on_lines_returns(env: tuple[Path, StateDB]) -> None:
    """A crash inside on_lines (kill -9 analogue: the process dies with the batch in hand)
    means the next start delivers that batch again: nothing is lost."""
    log, state = env
    append(log, lines("a", 2))

    class Crash(BaseException):
        pass

    def dies(batch: list[str]) -> None:
        raise Crash

    f = LogFollower("x", str(log), state, dies)
    with pytest.raises(Crash):
        f.poll_once()
    sink = Sink()
    f2 = LogFollower("x", str(log), state, sink)  # "after the restart"
    assert f2.poll_once() == 2
    f2.stop(1)
    assert sink.lines == expect("a", 2)


def test_over_long_line_is_cut_with_a_warning_and_never_crashes(
        env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    with capture_logs() as events:
        f = new(log, state, sink, max_line=100)
        append(log, "x" * 250 + "\nshort\n" + "y" * 150)  # the second long one is unfinished
        assert f.poll_once() == 2
        append(log, "y" * 1_000_000)  # megabytes with no newline: bounded memory, no line
        assert f.poll_once() == 0
        append(log, "yy\nafter\n")
        assert f.poll_once() == 2
        f.stop(1)
    assert sink.lines == ["x" * 100, "short", "y" * 100, "after"]
    too_long = [e for e in events if e["event"] == "log_line_too_long"]
    assert [e["length"] for e in too_long] == [250, 150 + 1_000_000 + 2]
    f2 = new(log, state, Sink(), max_line=100)
    assert f2.poll_once() == 0  # resumes after the cut line: nothing twice
    f2.stop(1)


def test_hostile_bytes_are_decoded_with_replacement(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, b"2026-11-24 10:00:00 caf\xe9 \x00\xff\xfe end\n\xc3\n")
    f = new(log, state, sink)
    assert f.poll_once() == 2
    f.stop(1)
    assert sink.lines == ["2026-11-24 10:00:00 caf\ufffd \x00\ufffd\ufffd end", "\ufffd"]


def test_start_at_end_skips_what_the_file_already_holds(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("old", 5) + "partial")
    f = new(log, state, sink, start_at_end=True)
    assert f.poll_once() == 0
    append(log, " end\n" + lines("new", 2))
    assert f.poll_once() == 3  # the line being written at start counts as new, whole
    f.stop(1)
    assert sink.lines == ["partial end", *expect("new", 2)]


def test_a_changed_path_does_not_reuse_the_old_position(env: tuple[Path, StateDB]) -> None:
    log, state = env
    sink = Sink()
    append(log, lines("a", 3))
    f = LogFollower("blocker", str(log), state, sink)
    f.poll_once()
    f.stop(1)
    other = log.with_name("other.log")
    append(other, lines("b", 2))
    f2 = LogFollower("blocker", str(other), state, sink)
    assert f2.poll_once() == 2
    f2.stop(1)
    assert sink.lines == expect("a", 3) + expect("b", 2)
