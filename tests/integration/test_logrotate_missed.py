"""LogFollower across real ``logrotate`` runs it missed (stopped, or not polled, meanwhile).

Every scenario runs Debian's own exim4-base stanza (daily, rotate 10, compress,
delaycompress, notifempty, nocreate) or a variant of it through the real ``logrotate -f``,
writing numbered lines between the runs, and checks that the follower delivers every line
exactly once, in order; what logrotate deleted for good is one ``log_data_lost`` event.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("logrotate") is None, reason="no logrotate")]

DEBIAN = "daily\nmissingok\nrotate 10\ncompress\ndelaycompress\nnotifempty\nnocreate\n"


class Scene:
    """A log directory, a logrotate config for it, a state database and what was written."""

    def __init__(self, root: Path, options: str) -> None:
        self.dir = root / "log"
        self.dir.mkdir()
        self.log = self.dir / "mainlog"
        self.conf = root / "logrotate.conf"
        self.conf.write_text(f"{self.log} {{\n{options}}}\n")
        self.status = root / "logrotate.status"
        self.state = StateDB(str(root / "state"))
        self.written: list[str] = []
        self.got: list[str] = []
        self.n = 0

    def write(self, count: int) -> None:
        """Exim-like: open by name (creating it), append, close."""
        with open(self.log, "a") as f:
            for _ in range(count):
                line = f"2026-12-07 06:25:{self.n % 60:02d} line {self.n}"
                f.write(line + "\n")
                self.written.append(line)
                self.n += 1

    def rotate(self) -> None:
        res = subprocess.run(["logrotate", "-f", "-s", str(self.status), str(self.conf)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr

    def follower(self) -> LogFollower:
        return LogFollower("blocker:" + str(self.log), str(self.log), self.state,
                           self.got.extend, drain_grace=0.0)

    def files(self) -> list[str]:
        return sorted(os.listdir(self.dir))


@pytest.fixture
def scene(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Scene]:
    yield Scene(tmp_path, getattr(request, "param", DEBIAN))


def run_until_idle(f: LogFollower) -> None:
    while f.poll_once():
        pass


def test_down_across_two_debian_rotations_reads_the_gz_and_mainlog_1_once(
        scene: Scene) -> None:
    f = scene.follower()
    scene.write(50)
    run_until_idle(f)
    scene.write(20)  # written, then the daemon stops before reading them
    f.stop(2)
    scene.rotate()
    scene.write(30)
    scene.rotate()
    scene.write(10)
    assert scene.files() == ["mainlog", "mainlog.1", "mainlog.2.gz"]
    with capture_logs() as events:
        f2 = scene.follower()
        run_until_idle(f2)
        f2.stop(2)
    assert scene.got == scene.written
    assert not [e for e in events if e["event"] in ("log_data_lost", "log_position_lost")]


def test_down_across_four_rotations_in_order_then_live(scene: Scene) -> None:
    f = scene.follower()
    scene.write(5)
    run_until_idle(f)
    f.stop(2)
    for k in range(4):
        scene.write(7 + k)
        scene.rotate()
    assert "mainlog" not in scene.files()  # nocreate, Exim idle
    f2 = scene.follower()
    run_until_idle(f2)
    assert scene.got == scene.written
    scene.write(3)  # Exim's next write creates the file
    run_until_idle(f2)
    f2.stop(2)
    assert scene.got == scene.written


def test_slow_across_two_rotations_reads_the_middle_file(scene: Scene) -> None:
    """Running but not polled (busy) while logrotate ran twice: the middle file is not
    skipped when the follower switches to the live one."""
    f = scene.follower()
    scene.write(10)
    run_until_idle(f)
    scene.write(5)
    scene.rotate()
    scene.write(6)  # the middle file: mainlog.1 after the second run
    scene.rotate()
    scene.write(4)
    run_until_idle(f)
    f.stop(2)
    assert scene.got == scene.written


@pytest.mark.parametrize("scene", [
    "daily\nrotate 10\ncompress\nnotifempty\ncreate 0640 root root\n",
    "daily\nrotate 10\ncompress\ndelaycompress\ncopytruncate\n",
    "daily\nrotate 10\ncompress\ncopytruncate\n",
], ids=["compress-at-once-create", "copytruncate-delaycompress", "copytruncate-compress"],
    indirect=True)
def test_other_rotation_setups_lose_and_repeat_nothing(scene: Scene) -> None:
    f = scene.follower()
    scene.write(40)
    run_until_idle(f)
    scene.write(9)
    f.stop(2)
    for k in range(3):
        scene.rotate()
        scene.write(11 + k)
    f2 = scene.follower()
    run_until_idle(f2)
    scene.write(2)
    run_until_idle(f2)
    f2.stop(2)
    assert scene.got == scene.written


def test_a_crash_inside_the_catch_up_resumes_inside_the_compressed_copy(
        scene: Scene) -> None:
    f = scene.follower()
    scene.write(3)
    run_until_idle(f)
    scene.write(300)
    f.stop(2)
    scene.rotate()
    scene.rotate()
    scene.write(5)
    got: list[str] = []

    def dies_after_100(lines: list[str]) -> None:
        room = 100 - len(got)
        got.extend(lines[:room])
        if len(lines) > room:
            raise RuntimeError("killed")

    crash = LogFollower("blocker:" + str(scene.log), str(scene.log), scene.state,
                        dies_after_100)
    with pytest.raises(RuntimeError):
        crash.poll_once()  # the batch that failed is not saved: it comes again
    assert got == scene.written[3:103]
    f3 = scene.follower()
    run_until_idle(f3)
    f3.stop(2)
    assert scene.got == scene.written[:3] + scene.written[3:]


@pytest.mark.parametrize("scene", ["daily\nrotate 1\ncompress\nnocreate\n"], indirect=True)
def test_rotated_away_for_good_is_one_event_and_the_rest_is_read(scene: Scene) -> None:
    f = scene.follower()
    scene.write(10)
    run_until_idle(f)
    scene.write(4)  # never read: deleted by the third rotation
    f.stop(2)
    scene.rotate()
    scene.write(6)
    scene.rotate()
    scene.write(8)  # kept as mainlog.1.gz (rotate 1)
    scene.rotate()
    scene.write(2)
    with capture_logs() as events:
        f2 = scene.follower()
        run_until_idle(f2)
        f2.stop(2)
    lost = [e for e in events if e["event"] == "log_data_lost"]
    unread = sum(len(line) + 1 for line in scene.written[10:14])
    # the 4 lines written before the stop were known (their size was saved): reported lost
    assert len(lost) == 1 and lost[0]["offset"] > 0 and lost[0]["bytes"] == unread, lost
    assert scene.got == scene.written[:10] + scene.written[20:]


def test_a_damaged_compressed_copy_is_reported_and_the_rest_still_read(scene: Scene) -> None:
    f = scene.follower()
    scene.write(10)
    run_until_idle(f)
    f.stop(2)
    scene.write(200)
    scene.rotate()
    scene.write(5)
    scene.rotate()  # the 200 lines are now mainlog.2.gz
    gz = scene.dir / "mainlog.2.gz"
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])  # cut: a full disk while compressing
    with capture_logs() as events:
        f2 = scene.follower()
        run_until_idle(f2)
        f2.stop(2)
    assert [e["event"] for e in events].count("log_data_lost") == 1
    got_middle = scene.got[10:-5]
    assert got_middle == scene.written[10:10 + len(got_middle)]  # a clean prefix of it
    assert scene.got[-5:] == scene.written[-5:]
    assert gzip.decompress(data).decode().splitlines() == scene.written[:210]
    assert 10 < len(scene.got) < len(scene.written)  # some of the damaged copy was saved


def test_missing_log_is_one_warning_then_one_event_when_it_appears(scene: Scene) -> None:
    with capture_logs() as events:
        f = scene.follower()
        for _ in range(5):
            assert f.poll_once() == 0
        scene.write(3)
        run_until_idle(f)
        f.stop(2)
    names = [e["event"] for e in events]
    assert names.count("log_missing") == 1 and names.count("log_appeared") == 1
    missing = next(e for e in events if e["event"] == "log_missing")
    assert missing["log_level"] == "warning" and missing["path"] == str(scene.log)
    assert scene.got == scene.written


def test_rotated_before_it_was_ever_opened_is_read_from_the_copies(scene: Scene) -> None:
    """Waiting for the log to appear (Exim not started yet), then Exim writes and logrotate
    runs twice before the first poll: the copies written since the wait began come first."""
    f = scene.follower()
    assert f.poll_once() == 0
    scene.write(4)
    scene.rotate()
    scene.write(3)
    scene.rotate()
    scene.write(2)
    run_until_idle(f)
    f.stop(2)
    assert scene.got == scene.written


def test_killed_while_waiting_for_the_log_then_rotated_reads_every_line(scene: Scene) -> None:
    """Stopped (kill -9: no stop()) before its first line, while the log did not exist yet;
    Exim then writes and logrotate runs: the restart reads the copies, then the live file."""
    f = scene.follower()
    assert f.poll_once() == 0  # waiting; nothing more is saved before the "crash"
    scene.write(5)
    scene.rotate()
    scene.write(2)
    with capture_logs() as events:
        f2 = scene.follower()
        run_until_idle(f2)
        f2.stop(2)
    assert scene.got == scene.written
    assert not [e for e in events if e["event"] == "log_data_lost"]
