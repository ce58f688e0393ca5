"""Maildir names and flags: the pure helpers in mailopsd.maildir.folder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailopsd.maildir.folder import MessageRef
from mailopsd.maildir.names import (
    check_folder_name,
    split_info,
    unique_name,
    valid_message_name,
    with_flags,
)


def test_split_info_reads_the_2_suffix() -> None:
    assert split_info("1795557174.M522920P20602.mail,S=12:2,FS") == (
        "1795557174.M522920P20602.mail,S=12", "FS")
    assert split_info("1795557174.M1P2.host") == ("1795557174.M1P2.host", None)
    assert split_info("1.M1P2.host:2,") == ("1.M1P2.host", "")
    assert split_info("1.M1P2.host:1,experimental") == ("1.M1P2.host", None)


def test_seen_is_added_in_ascii_order_keeping_unknown_flags_and_keywords() -> None:
    assert with_flags("b:2,FT", "S") == "b:2,FST"
    assert with_flags("b:2,Fab", "S") == "b:2,FSab"  # Dovecot keywords stay after capitals
    assert with_flags("b:2,XS", "S") == "b:2,SX"  # an unknown flag is kept
    assert with_flags("b", "S") == "b:2,S"  # a new/ name gets its first info suffix
    assert with_flags("b:2,RS", remove="S") == "b:2,R"


def test_a_non_2_info_suffix_is_left_alone() -> None:
    assert with_flags("b:1,weird", "S") == "b:1,weird"


@given(st.text(alphabet="DFPRSTabcz", max_size=8), st.text(alphabet="DFPRST", max_size=3))
def test_with_flags_is_sorted_and_a_superset(flags: str, add: str) -> None:
    name = with_flags(f"base:2,{flags}", add)
    base, got = split_info(name)
    assert base == "base" and got is not None
    assert list(got) == sorted(set(got))
    assert set(flags) | set(add) == set(got)


def test_unique_names_differ_and_carry_the_size() -> None:
    a, b = unique_name(10), unique_name(10)
    assert a != b
    assert a.endswith(",S=10") and "/" not in a and ":" not in a


@pytest.mark.parametrize("name", [".INBOX.Spam", ".INBOX.Not Spam", ".Trash", ". x"])
def test_folder_names_with_spaces_are_valid(name: str) -> None:
    check_folder_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "INBOX.Spam", ".a/b", "../x", ".a\nb"])
def test_bad_folder_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_folder_name(name)


def test_message_names() -> None:
    assert valid_message_name("1.M2P3.h:2,S")
    assert not valid_message_name(".hidden")
    assert not valid_message_name("a/b")
    assert not valid_message_name("")


def test_message_ref_round_trips_and_rejects_bad_input() -> None:
    ref = MessageRef("cur", "1.M2P3.h:2,S", 5, 77, 120, 2)
    assert MessageRef.from_json(ref.to_json()) == ref
    for bad in ({**ref.to_json(), "subdir": "tmp"}, {**ref.to_json(), "name": "../x"},
                {"subdir": "cur"}):
        with pytest.raises((ValueError, KeyError)):
            MessageRef.from_json(bad)
