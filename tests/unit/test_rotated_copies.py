"""rotated.catch_up on the directory states logrotate passes through (no logrotate run)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from mailopsd.logtail.reader import first_line_hash
from mailopsd.logtail.rotated import catch_up, rotated_files


def write(p: Path, lines: list[str]) -> None:
    p.write_text("".join(line + "\n" for line in lines))


def ident(p: Path) -> tuple[tuple[int, int], str]:
    st = os.stat(p)
    fd = os.open(p, os.O_RDONLY)
    try:
        return (st.st_dev, st.st_ino), first_line_hash(fd, 9216)
    finally:
        os.close(fd)


def test_order_is_oldest_first_numbers_and_dates(tmp_path: Path) -> None:
    for n in ("mainlog.1", "mainlog.2.gz", "mainlog.10.gz", "mainlog.3.gz", "mainlog-x",
              "mainlogX.1", "mainlog.1.bak"):
        (tmp_path / n).touch()
    assert [os.path.basename(p) for p in rotated_files(str(tmp_path / "mainlog"))] == [
        "mainlog.10.gz", "mainlog.3.gz", "mainlog.2.gz", "mainlog.1"]
    for n in ("log-20261206.gz", "log-20261207", "log-20261205.gz"):
        (tmp_path / n).touch()
    assert [os.path.basename(p) for p in rotated_files(str(tmp_path / "log"))] == [
        "log-20261205.gz", "log-20261206.gz", "log-20261207"]


def test_a_copy_being_compressed_is_not_a_newer_file(tmp_path: Path) -> None:
    """Mid-run: the file we read is mainlog.2 and logrotate is writing mainlog.2.gz from it
    (partial: not even a whole first line yet). Nothing is newer than it but mainlog.1."""
    write(tmp_path / "mainlog.2", ["a 1", "a 2"])
    whole = gzip.compress(b"a 1\na 2\n")
    (tmp_path / "mainlog.2.gz").write_bytes(whole[:12])
    write(tmp_path / "mainlog.1", ["b 1"])
    dev_ino, h = ident(tmp_path / "mainlog.2")
    found = catch_up(str(tmp_path / "mainlog"), dev_ino, h, 4, 9216, 0.0)
    assert found.reader is not None and found.reader.path.endswith("mainlog.2")
    assert [os.path.basename(p) for p in found.later] == ["mainlog.1"]
    found.reader.close()
    # finished: the same file twice (plain and .gz) counts once, as the plain one
    (tmp_path / "mainlog.2.gz").write_bytes(whole)
    found = catch_up(str(tmp_path / "mainlog"), dev_ino, h, 4, 9216, 0.0)
    assert found.reader is not None and found.reader.path.endswith("mainlog.2")
    assert [os.path.basename(p) for p in found.later] == ["mainlog.1"] and not found.ambiguous
    found.reader.close()
    # the plain one deleted: the .gz holds the position now
    os.unlink(tmp_path / "mainlog.2")
    found = catch_up(str(tmp_path / "mainlog"), dev_ino, h, 4, 9216, 0.0)
    assert found.reader is not None and found.reader.path.endswith("mainlog.2.gz")
    assert found.reader.read_chunk() == [b"a 2"]
    found.reader.close()


def test_copies_starting_like_the_saved_file_are_never_read_again(tmp_path: Path) -> None:
    write(tmp_path / "mainlog.3", ["same", "x"])
    write(tmp_path / "mainlog.2", ["same", "y"])  # another file, same first line
    write(tmp_path / "mainlog.1", ["other"])
    _, h = ident(tmp_path / "mainlog.3")
    found = catch_up(str(tmp_path / "mainlog"), None, h, 5, 9216, 0.0)
    assert found.ambiguous and found.reader is not None
    assert found.reader.path.endswith("mainlog.2")  # the newest: skip rather than repeat
    assert [os.path.basename(p) for p in found.later] == ["mainlog.1"]
    found.reader.close()
