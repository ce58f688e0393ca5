"""The reload verdict file that lets ``mailopsd reload`` (ExecReload) fail on a refused config."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mailopsd.daemon.reload_verdict import read_verdict, wait_for_verdict, write_verdict


def test_each_reload_writes_a_higher_generation_with_its_outcome(tmp_path: Path) -> None:
    assert read_verdict(str(tmp_path)) is None
    first = write_verdict(str(tmp_path), True, [])
    second = write_verdict(str(tmp_path), False, ["daemon.bogus: unknown key"])
    assert (first.generation, second.generation) == (1, 2)
    got = read_verdict(str(tmp_path))
    assert got is not None and got.generation == 2 and not got.applied
    assert got.problems == ("daemon.bogus: unknown key",) and got.pid == os.getpid()


def test_garbage_or_a_symlink_reads_as_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "reload.json").write_text("{not json")
    assert read_verdict(str(tmp_path)) is None
    assert write_verdict(str(tmp_path), True, []).generation == 1
    (tmp_path / "reload.json").unlink()
    (tmp_path / "elsewhere.json").write_text('{"generation": 7, "applied": true}')
    (tmp_path / "reload.json").symlink_to(tmp_path / "elsewhere.json")
    assert read_verdict(str(tmp_path)) is None


def test_waiting_returns_only_a_newer_verdict_or_none_on_timeout(tmp_path: Path) -> None:
    write_verdict(str(tmp_path), True, [])
    assert wait_for_verdict(str(tmp_path), after=1, timeout=0.2) is None
    timer = threading.Timer(0.1, write_verdict, (str(tmp_path), False, ["x: bad"]))
    timer.start()
    got = wait_for_verdict(str(tmp_path), after=1, timeout=5)
    timer.join()
    assert got is not None and got.generation == 2 and got.problems == ("x: bad",)


def test_waiting_stops_early_when_the_daemon_is_gone(tmp_path: Path) -> None:
    assert wait_for_verdict(str(tmp_path), after=0, timeout=30, alive=lambda: False) is None
