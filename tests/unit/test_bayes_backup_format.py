"""Bayes backup files: the dump format check, gzip + manifest, retention (pure logic, no root)."""

from __future__ import annotations

import gzip
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailopsd.spam.bayes_backup import (
    MANIFEST,
    InvalidBackupError,
    backup_name,
    check_counts,
    load_backup,
    name_tag,
    name_time,
    parse_backup,
    prune,
    read_manifest,
    select_retained,
    write_backup,
)

NOW = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)


def dump(nspam: int = 2, nham: int = 1, tokens: int = 5) -> str:
    """A dump in sa-learn --backup's exact layout."""
    lines = ["v\t3\tdb_version # this must be the first line!!!", f"v\t{nspam}\tnum_spam",
             f"v\t{nham}\tnum_nonspam"]
    lines += [f"t\t{i % 2}\t{(i + 1) % 2}\t1795428000\t{i:010x}" for i in range(tokens)]
    lines += [f"s\ts\t{i:040x}@sa_generated" for i in range(nspam)]
    lines += [f"s\th\t{i + 100:040x}@sa_generated" for i in range(nham)]
    return "\n".join(lines) + "\n"


def test_a_real_dump_layout_is_counted() -> None:
    counts = parse_backup(dump(2, 1, 5))
    assert (counts.db_version, counts.nspam, counts.nham, counts.ntokens, counts.nseen) == \
        (3, 2, 1, 5, 3)
    check_counts(counts, 2, 1, 5, "--dump magic")
    with pytest.raises(InvalidBackupError, match="ntokens 6"):
        check_counts(counts, 2, 1, 6, "--dump magic")


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    (dump()[:-9], "newline"),                                   # cut inside the last line
    ("garbage\n", "db_version"),
    ("t\t1\t0\t1\tab\n", "db_version"),
    (dump().replace("\t0000000002\n", "\tzz\n"), "line 6"),     # token not hex
    (dump().replace("v\t1\tnum_nonspam\n", ""), "num_nonspam"),
    (dump() + "t\t1\t0\t1\tab\n", "line 12"),                   # a token after the seen lines
    (dump().replace("\t1795428000\t0000000001", "\t17954\t28000\t0000000001"), "line 5"),
])
def test_damaged_dumps_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidBackupError, match=why):
        parse_backup(text)


def test_plain_file_cut_at_a_line_boundary_is_refused(tmp_path: Path) -> None:
    cut = "".join(dump(3, 3, 50).splitlines(keepends=True)[:40])  # ends inside the tokens
    (tmp_path / "plain.txt").write_text(cut)
    with pytest.raises(InvalidBackupError, match="truncated"):
        load_backup(str(tmp_path / "plain.txt"))
    (tmp_path / "whole.txt").write_text(dump(3, 3, 50))
    loaded = load_backup(str(tmp_path / "whole.txt"))
    assert loaded.counts.ntokens == 50 and loaded.checksum == "absent" and not loaded.compressed


def test_written_backup_is_gzip_with_a_sha256sum_compatible_manifest(tmp_path: Path) -> None:
    path, digest = write_backup(str(tmp_path), dump(), NOW)
    assert os.path.basename(path) == "bayes-20261124T031500Z.backup.gz"
    assert gzip.decompress(Path(path).read_bytes()).decode() == dump()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_manifest(str(tmp_path)) == {os.path.basename(path): digest}
    check = subprocess.run(["sha256sum", "-c", MANIFEST], cwd=tmp_path, capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    loaded = load_backup(path)
    assert loaded.checksum == "ok" and loaded.text == dump()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_damaged_or_truncated_backup_files_are_refused(tmp_path: Path) -> None:
    path, _ = write_backup(str(tmp_path), dump(3, 3, 400), NOW)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidBackupError, match="sha256"):
        load_backup(path)  # listed in the manifest: the checksum catches it first
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "bayes.backup.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidBackupError, match="gzip"):
        load_backup(str(elsewhere / "bayes.backup.gz"))  # no manifest: gzip's CRC/length


def test_names_carry_time_and_tag() -> None:
    name = backup_name(NOW, "pre-restore")
    assert name == "bayes-20261124T031500Z-pre-restore.backup.gz"
    assert name_time(name) == NOW and name_tag(name) == "pre-restore"
    assert name_time("notes.txt") is None and name_tag(backup_name(NOW)) == ""


def test_retention_keeps_daily_weekly_monthly() -> None:
    stamps = [NOW - timedelta(days=d) for d in range(400)]
    kept = select_retained(stamps, daily=7, weekly=4, monthly=6)
    assert {NOW - timedelta(days=d) for d in range(7)} <= kept
    assert len({t.isocalendar()[:2] for t in kept}) >= 4
    assert len({(t.year, t.month) for t in kept}) == 6
    assert len(kept) <= 7 + 4 + 6
    assert select_retained(stamps, 0, 0, 0) == {NOW}  # the newest always stays


@given(st.lists(st.integers(min_value=0, max_value=2000 * 24), min_size=1, max_size=60),
       st.integers(0, 10), st.integers(0, 6), st.integers(0, 12))
def test_retention_properties(hours: list[int], daily: int, weekly: int, monthly: int) -> None:
    stamps = [NOW - timedelta(hours=h) for h in hours]
    kept = select_retained(stamps, daily, weekly, monthly)
    assert max(stamps) in kept and kept <= set(stamps)
    assert len(kept) <= max(1, daily + weekly + monthly)
    days = sorted({t.date() for t in stamps}, reverse=True)[:daily]
    for day in days:  # the newest backup of each of the last `daily` days is kept
        assert max(t for t in stamps if t.date() == day) in kept


def test_prune_deletes_only_what_retention_drops(tmp_path: Path) -> None:
    for days in range(10):
        write_backup(str(tmp_path), dump(), NOW - timedelta(days=days))
    write_backup(str(tmp_path), dump(), NOW - timedelta(days=1), "pre-restore")
    write_backup(str(tmp_path), dump(), NOW - timedelta(days=9), "pre-restore")
    (tmp_path / "admin-notes.txt").write_text("keep me\n")
    assert prune(str(tmp_path), 3, 0, 0, NOW, dry_run=True)  # dry run: nothing deleted
    assert len(os.listdir(tmp_path)) == 14
    removed = prune(str(tmp_path), 3, 0, 0, NOW)
    left = sorted(os.listdir(tmp_path))
    assert len(removed) == 8 and "admin-notes.txt" in left
    assert backup_name(NOW - timedelta(days=1), "pre-restore") in left
    assert backup_name(NOW - timedelta(days=9), "pre-restore") in removed
    assert set(read_manifest(str(tmp_path))) == {n for n in left if name_time(n)}
