"""`sa-learn --dump magic` parsing, the seed's stats sentence and the warnings about counts."""

from __future__ import annotations

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.users import Account
from mailopsd.spam.bayes_db import NO_RULES, BayesDB, BayesError, assess, parse_magic

# The seed document's own output (24 Dec 2008), in sa-learn's '%3.3f %10u %10u %10u  %s' layout.
SEED_MAGIC = """\
0.000          0          3          0  non-token data: bayes db version
0.000          0        733          0  non-token data: nspam
0.000          0         22          0  non-token data: nham
0.000          0      29962          0  non-token data: ntokens
0.000          0 1228202529          0  non-token data: oldest atime
0.000          0 1230047836          0  non-token data: newest atime
0.000          0          0          0  non-token data: last journal sync atime
0.000          0          0          0  non-token data: last expiry atime
0.000          0          0          0  non-token data: last expire atime delta
0.000          0          0          0  non-token data: last expire reduction count
"""


def test_magic_parsed_into_named_numbers() -> None:
    magic = parse_magic(SEED_MAGIC)
    assert (magic.nspam, magic.nham, magic.ntokens) == (733, 22, 29962)
    assert magic.values["db_version"] == 3 and magic.values["newest_atime"] == 1230047836
    assert magic.values["last_expire_reduction_count"] == 0


def test_the_seeds_sentence_word_for_word() -> None:
    assert parse_magic(SEED_MAGIC).sentence() == \
        "733 spams and 22 hams have been processed with 29962 tokens."


def test_seed_database_gets_both_warnings() -> None:
    warnings = dict(assess(parse_magic(SEED_MAGIC), 200, 5.0))
    assert set(warnings) == {"bayes_not_active", "bayes_unbalanced"}
    assert "nham 22 below 200" in warnings["bayes_not_active"]
    assert "733 spam vs 22" in warnings["bayes_unbalanced"]


@pytest.mark.parametrize(("nspam", "nham", "events"), [
    (1000, 800, set()),
    (199, 5000, {"bayes_not_active", "bayes_unbalanced"}),
    (250, 1200, set()),             # 4.8 times: within the default ratio of 5
    (200, 1001, {"bayes_unbalanced"}),
    (0, 0, {"bayes_not_active"}),  # empty: not active, but no ratio to speak of
])
def test_warning_thresholds(nspam: int, nham: int, events: set[str]) -> None:
    text = SEED_MAGIC.replace("733", f"{nspam:>3}").replace("        22 ", f"{nham:>10} ")
    magic = parse_magic(text)
    assert (magic.nspam, magic.nham) == (nspam, nham)
    assert {e for e, _ in assess(magic, 200, 5.0)} == events


def test_output_without_counts_is_an_error() -> None:
    with pytest.raises(BayesError, match="nspam"):
        parse_magic("ERROR: Bayes dump returned an error\n")


def test_sa_learn_runs_on_the_owners_database_without_rules() -> None:
    owner = Account("Debian-exim", 102, 105, "/var/spool/exim4")
    db = BayesDB(owner, "", "/usr/bin/sa-learn")
    assert db.prefix == "/var/spool/exim4/.spamassassin/bayes"
    assert db.argv("--backup") == ("/usr/bin/sa-learn", "--configpath", NO_RULES, "--backup")
    moved = BayesDB(owner, "/srv/bayes/bayes", "/usr/bin/sa-learn")
    assert moved.prefix == "/srv/bayes/bayes"
    assert moved.argv("--sync")[3:] == ("--dbpath", "/srv/bayes/bayes", "--sync")


def test_stats_and_backup_settings_defaults() -> None:
    cfg = parse_config({})
    assert (cfg.jobs.bayes_stats.min_messages, cfg.jobs.bayes_stats.max_ratio) == (200, 5.0)
    backup = cfg.jobs.bayes_backup
    assert (backup.keep_daily, backup.keep_weekly, backup.keep_monthly) == (7, 4, 6)
    assert backup.backup_dir is None and cfg.spamassassin.bayes_lock_wait == 900
