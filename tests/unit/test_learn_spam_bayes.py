"""sa-learn command building and judging (mailopsd.spam.bayes), config, and mailbox discovery."""

from __future__ import annotations

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError
from mailopsd.core.users import find_mailboxes
from mailopsd.spam.bayes import (
    Learned,
    learn_outcome,
    list_file_text,
    parse_learned,
    sa_learn_argv,
)


def test_argv_learns_one_class_from_a_list_without_the_silent_size_limit() -> None:
    assert sa_learn_argv("/usr/bin/sa-learn", dbpath=None, listfile="/s/l", klass="spam") == (
        "/usr/bin/sa-learn", "--spam", "--max-size", "0", "-f", "/s/l")
    assert sa_learn_argv("/x", dbpath="/db/bayes", listfile="/l", klass="ham")[:4] == (
        "/x", "--dbpath", "/db/bayes", "--ham")
    with pytest.raises(ValueError):
        sa_learn_argv("/x", dbpath=None, listfile="/l", klass="eggs")  # type: ignore[arg-type]


def test_list_file_lines_and_paths_sa_learn_would_glob() -> None:
    assert list_file_text("ham", ["/s/a b", "/s/c"]) == "ham:file:/s/a b\nham:file:/s/c\n"
    for bad in ("/s/m[12]", "/s/*", "/s/a\nspam:file:/etc/passwd", "relative"):
        with pytest.raises(ValueError):
            list_file_text("spam", [bad])


def test_parse_learned_reads_the_summary_line() -> None:
    out = "Learned tokens from 7 message(s) (9 message(s) examined)\n"
    assert parse_learned(out) == Learned(7, 9)
    assert parse_learned("garbage") is None


@pytest.mark.parametrize(("rc", "out", "listed", "ok"), [
    (0, "Learned tokens from 3 message(s) (3 message(s) examined)", 3, True),
    (0, "Learned tokens from 0 message(s) (3 message(s) examined)", 3, True),  # known already
    (1, "Learned tokens from 0 message(s) (0 message(s) examined)", 0, True),  # empty: fine
    (1, "Learned tokens from 0 message(s) (0 message(s) examined)", 2, False),
    (0, "Learned tokens from 2 message(s) (2 message(s) examined)", 3, False),  # one skipped
    (13, "Learned tokens from 0 message(s) (1 message(s) examined)", 1, False),  # lock failed
    (25, "", 1, False),
    (-9, "", 1, False),
])
def test_only_rc_0_with_every_file_examined_counts_as_learned(rc: int, out: str, listed: int,
                                                              ok: bool) -> None:
    assert learn_outcome(rc, out, listed)[0] is ok


def test_config_defaults_and_keys() -> None:
    job = parse_config({}).jobs.learn_spam
    assert (job.spam_folders, job.ham_folders) == ((".INBOX.Spam",), (".INBOX.Not Spam",))
    assert (job.spam_action, job.max_size, job.schedule) == ("delete", 512000, "30 4 * * *")
    cfg = parse_config({"jobs": {"learn-spam": {"spam_folders": [".My Junk"],
                                                "spam_action": "trash", "max_size": 0}}})
    assert cfg.jobs.learn_spam.spam_folders == (".My Junk",)


@pytest.mark.parametrize(("table", "key"), [
    ({"spam_folders": ["INBOX/Spam"]}, "spam_folders"),
    ({"ham_folders": [".a/b"]}, "ham_folders"),
    ({"spam_action": "shred"}, "spam_action"),
    ({"staging_dir": "/var/tmp/[x]"}, "staging_dir"),
    ({"staging_dir": "relative"}, "staging_dir"),
    ({"max_size": -1}, "max_size"),
    ({"spam_folders": [".X"], "ham_folders": [".X"]}, ""),  # cross-key checks: the table
    ({"spam_action": "trash", "trash_folder": ".INBOX.Spam"}, ""),
])
def test_bad_learn_spam_config_names_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"jobs": {"learn-spam": table}})
    assert (f"jobs.learn-spam.{key}:" if key else "jobs.learn-spam:") in str(err.value)


def test_discovery_of_an_explicit_list_reports_unknown_root_and_missing_maildirs() -> None:
    boxes, problems = find_mailboxes(("root", "no-such-user-xyz", "nobody"), 1000, 60000, (),
                                     "Maildir")
    assert boxes == []
    assert [name for name, _ in problems] == ["root", "no-such-user-xyz", "nobody"]
    assert find_mailboxes(("nobody",), 0, 0, ("nobody",), "Maildir") == ([], [])
