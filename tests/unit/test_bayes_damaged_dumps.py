"""Damaged Bayes dumps: every cut, plain or gzipped, is refused by the file check alone.

``load_backup`` is what ``bayes restore`` runs before it takes the Bayes lock or starts any
sa-learn: a refusal here means the database was never touched (the real-sa-learn proof is
``tests/integration/test_bayes_real.py::test_every_kind_of_damaged_dump_is_refused_untouched``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mailopsd.spam.bayes_backup import InvalidBackupError, load_backup, parse_backup


def dump(nspam: int = 3, nham: int = 2, tokens: int = 12, version: int = 3) -> str:
    """A dump in sa-learn --backup's exact layout."""
    lines = [f"v\t{version}\tdb_version # this must be the first line!!!",
             f"v\t{nspam}\tnum_spam", f"v\t{nham}\tnum_nonspam"]
    lines += [f"t\t{i % 2}\t{(i + 1) % 2}\t1795428000\t{i:010x}" for i in range(tokens)]
    lines += [f"s\ts\t{i:040x}@sa_generated" for i in range(nspam)]
    lines += [f"s\th\t{i + 100:040x}@sa_generated" for i in range(nham)]
    return "\n".join(lines) + "\n"


def refused(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidBackupError) as info:
        load_backup(str(path))
    return str(info.value)


def test_whole_dump_loads_plain_and_gzipped(tmp_path: Path) -> None:
    for name, data in (("d.txt", dump().encode()), ("d.gz", gzip.compress(dump().encode()))):
        (tmp_path / name).write_bytes(data)
        assert load_backup(str(tmp_path / name)).counts.ntokens == 12


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_dump_cut_between_any_two_lines_is_refused_whatever_the_compression(
        tmp_path: Path, compress: bool) -> None:
    lines = dump().splitlines(keepends=True)
    for keep in range(len(lines)):  # every clean cut, including "nothing" and "header only"
        text = "".join(lines[:keep]).encode()
        data = gzip.compress(text) if compress else text
        why = refused(tmp_path, f"cut{keep}", data)
        assert any(w in why for w in ("truncated", "empty", "lacks", "db_version")), why


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_dump_cut_inside_a_line_is_refused(tmp_path: Path, compress: bool) -> None:
    text = dump().encode()
    for at in range(1, len(text) - 1, 7):
        if text[at - 1:at] == b"\n":
            continue  # a clean cut: the test above
        data = gzip.compress(text[:at]) if compress else text[:at]
        refused(tmp_path, f"in{at}", data)


def test_a_gzip_file_cut_at_any_byte_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(dump(20, 20, 300).encode())
    for at in range(0, len(data) - 1, 3):
        refused(tmp_path, f"gz{at}", data[:at])


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (gzip.compress(b""), "empty"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "not a text backup"),
    (b"# /etc/services\ntcpmux\t\t1/tcp\n", "db_version"),
    (gzip.compress(b"From: a@example.test\nSubject: hi\n\nbody\n"), "db_version"),
    (dump(version=2).encode(), "another Bayes database format"),
    (gzip.compress(dump(version=0).encode()), "another Bayes database format"),
], ids=["empty", "empty-gzip", "binary", "other-text", "a-message-gzipped", "db-v2", "db-v0-gz"])
def test_other_files_and_other_formats_are_refused_with_the_reason(
        tmp_path: Path, data: bytes, why: str) -> None:
    assert why in refused(tmp_path, "other", data)


def test_a_database_with_no_messages_is_a_whole_dump() -> None:
    counts = parse_backup(dump(0, 0, 0))
    assert (counts.nspam, counts.nham, counts.ntokens, counts.nseen) == (0, 0, 0, 0)
