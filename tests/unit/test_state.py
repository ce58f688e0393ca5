"""The state database: migrations, versions, job history bookkeeping."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from mailopsd.core.errors import StateError
from mailopsd.core.state import SCHEMA_VERSION, StateDB, split_sql


def test_new_database_is_migrated_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    conn = StateDB(str(tmp_path)).connect()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_not_touched(tmp_path: Path) -> None:
    raw = sqlite3.connect(str(tmp_path / "state.db"))
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StateError, match="newer than this"):
        StateDB(str(tmp_path)).connect()


def test_semicolons_in_comments_and_strings_do_not_split_statements() -> None:
    script = """
        CREATE TABLE t (a TEXT DEFAULT 'x;y'  -- a comment; with a semicolon
        );
        -- trailing comment; nothing else
        CREATE INDEX t_a ON t (a);
    """
    statements = split_sql(script)
    assert len(statements) == 2
    conn = sqlite3.connect(":memory:")
    for statement in statements:
        conn.execute(statement)


def test_runs_of_dead_processes_become_interrupted(tmp_path: Path) -> None:
    state = StateDB(str(tmp_path))
    run_id = state.job_started("housekeeping", "schedule")
    with state.transaction() as c:  # pretend a process that no longer exists started it
        c.execute("UPDATE job_runs SET pid = ? WHERE id = ?", (2**22 + 12345, run_id))
    own = state.job_started("bayes-stats", "schedule")
    assert state.interrupt_stale_runs() == 1
    assert state.last_run("housekeeping").result == "interrupted"  # type: ignore[union-attr]
    assert state.last_run("bayes-stats").result == "running"  # type: ignore[union-attr]
    assert state.cancel_own_runs("stopping") == 1
    assert state.last_run("bayes-stats").result == "cancelled"  # type: ignore[union-attr]
    assert own > run_id and os.getpid() == state.last_run("bayes-stats").pid  # type: ignore[union-attr]
