"""Blocker and job figures from the state database and the mainlog (no blocker code involved)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailopsd.core.state import StateDB
from mailopsd.health import statedb
from mailopsd.health.statedb import StateFigures


def seed(tmp_path: Path, lines: int, read: int) -> tuple[Path, Path]:
    db = StateDB(str(tmp_path / "state"))
    mainlog = tmp_path / "mainlog"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 90))
    text = [f"{stamp} line {i}\n" for i in range(lines)]
    mainlog.write_text("".join(text))
    st = mainlog.stat()
    with db.transaction() as conn:
        conn.execute("INSERT INTO log_positions (name, path, dev, ino, offset, "
                     "first_line_hash, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     ("blocker:x", str(mainlog), st.st_dev, st.st_ino,
                      sum(len(t) for t in text[:read]), "h", time.time() - 30))
    return tmp_path / "state" / "state.db", mainlog


def test_lines_read_and_lag_of_the_first_unread_line(tmp_path: Path) -> None:
    db, mainlog = seed(tmp_path, lines=5, read=3)
    s = StateFigures(str(db), str(mainlog), "nftables").samples()
    assert s.get("mailopsd_log_lines_total") == {(): 3.0}
    assert 80 < s.get("mailopsd_log_lag_seconds")[()] < 200
    unread = "".join(mainlog.read_text().splitlines(keepends=True)[3:])
    assert s.get("mailopsd_log_unread_bytes")[()] == len(unread)


def test_no_lag_at_the_end_and_counting_goes_on(tmp_path: Path) -> None:
    db, mainlog = seed(tmp_path, lines=2, read=2)
    figures = StateFigures(str(db), str(mainlog), "iptables")
    assert figures.samples().get("mailopsd_log_lag_seconds") == {(): 0.0}
    assert figures.samples().get("mailopsd_log_lines_total") == {(): 2.0}  # not counted twice


def test_a_huge_unread_backlog_is_counted_over_several_scrapes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statedb, "COUNT_PER_SCRAPE", 60)
    db, mainlog = seed(tmp_path, lines=10, read=10)
    figures = StateFigures(str(db), str(mainlog), "iptables")
    totals = [figures.samples().get("mailopsd_log_lines_total")[()] for _ in range(6)]
    assert totals[0] < 10 and totals == sorted(totals) and totals[-1] == 10


def test_blocker_off_means_no_log_figures_and_missing_db_means_no_samples(tmp_path: Path) -> None:
    db, mainlog = seed(tmp_path, lines=2, read=1)
    off = StateFigures(str(db), str(mainlog), "iptables", follow_log=False).samples()
    assert "mailopsd_log_lag_seconds" not in off.values
    none = StateFigures(str(tmp_path / "nope.db"), str(mainlog), "iptables").samples()
    assert none.get("mailopsd_bans_active") == {} and none.get("mailopsd_job_runs_total") == {}
