"""scan-log on two CPUs (blocker/scanfork.py): a child parses the second half of the file and
the parent counts both halves in order, deciding exactly what one process decides."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path

import pytest

from mailopsd.blocker import scanfork
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.blocker.scan import ScanResult, scan_file
from mailopsd.core.config import parse_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gen_mainlog import generate

T0 = time.mktime((2026, 11, 24, 8, 0, 0, 0, 0, -1))
CFG = parse_config({"blocker": {"ignore_self": False}}).blocker


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fork") / "mainlog"
    path.write_text("".join(generate(30_000, 11, 6.0, T0)))
    return path


def _same(result: ScanResult, live: BanPolicy, decisions: list[object]) -> None:
    assert result.bans == decisions and len(decisions) > 20
    assert result.lines == live.lines == 30_000
    assert {k: (v["matches"], v["unmatched"]) for k, v in result.rules.items()} == {
        k: (live.matches[k], live.unmatched[k]) for k in result.rules}
    assert result.exempted == live.exempted


def _decisions(path: Path) -> tuple[BanPolicy, list[object]]:
    live = BanPolicy(CFG, IgnoreList(()))
    out: list[object] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = live.feed_line(line.rstrip("\n"))
            if d is not None:
                out.append(d)
    return live, out


def test_the_split_scan_decides_exactly_like_the_live_policy(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanfork, "MIN_SIZE", 0)
    monkeypatch.setattr(scanfork, "_spare_cpu", lambda: True)
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    result = scan_file(str(log), CFG, IgnoreList(()))
    assert forks == [1]  # the second half really was parsed by a child
    _same(result, *_decisions(log))


def test_a_failing_child_leaves_the_second_half_to_the_parent(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: object) -> bytes:
        raise RuntimeError("the child dies before sending")

    monkeypatch.setattr(scanfork, "MIN_SIZE", 0)
    monkeypatch.setattr(scanfork, "_spare_cpu", lambda: True)
    monkeypatch.setattr(scanfork.marshal, "dumps", broken)  # in the forked child only matters
    result = scan_file(str(log), CFG, IgnoreList(()))
    _same(result, *_decisions(log))


def test_no_spare_cpu_a_small_file_or_a_gzip_file_is_read_in_one_process(
        log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("no child expected")

    gz = tmp_path / "mainlog.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    monkeypatch.setattr(os, "fork", no_fork)
    with open(log, "rb") as plain:
        assert scanfork.split_point(plain) is None  # 3 MB: below MIN_SIZE
    monkeypatch.setattr(scanfork, "MIN_SIZE", 0)
    with gzip.open(gz, "rb") as f:
        assert scanfork.split_point(f) is None  # type: ignore[arg-type]  # not a plain file
    _same(scan_file(str(gz), CFG, IgnoreList(())), *_decisions(log))
    monkeypatch.setattr(scanfork, "_spare_cpu", lambda: False)
    _same(scan_file(str(log), CFG, IgnoreList(())), *_decisions(log))


def test_the_split_falls_on_a_line_start_after_the_middle(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanfork, "MIN_SIZE", 0)
    path = tmp_path / "log"
    path.write_bytes(b"a" * 10 + b"\n" + b"b" * 20 + b"\n" + b"c\n")
    with open(path, "rb") as f:
        mid = scanfork.split_point(f)
        assert f.tell() == 0
    assert mid == 32  # the middle (17) is inside the b line: the split is after it
    path.write_bytes(b"x" * 40)  # no newline after the middle: no split
    with open(path, "rb") as f:
        assert scanfork.split_point(f) is None
    path.write_bytes(b"x\n" * 20)  # too big to hold the child's events: streamed in one process
    monkeypatch.setattr(scanfork, "MAX_SIZE", 39)
    with open(path, "rb") as f:
        assert scanfork.split_point(f) is None


def test_a_spare_cpu_needs_two_cpus_and_a_load_below_their_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert scanfork._spare_cpu()
    monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 0.5, 0.5))
    assert scanfork._spare_cpu()
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 0.5, 0.5))
    assert not scanfork._spare_cpu()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not scanfork._spare_cpu()
