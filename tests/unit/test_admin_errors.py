"""Errors an admin meets say what to do: a missing home, "run as root"."""

from __future__ import annotations

import os

import pytest

from mailopsd.core.errors import ProcessError
from mailopsd.core.process import run
from mailopsd.core.users import Account


def test_missing_home_is_reported_as_a_missing_home(tmp_path: os.PathLike[str]) -> None:
    gone = os.path.join(str(tmp_path), "no-such-home")
    acct = Account("someone", os.getuid(), os.getgid(), gone)
    with pytest.raises(ProcessError) as info:
        run(("/bin/true",), timeout=10, account=acct)
    message = str(info.value)
    assert "someone's home directory" in message and gone in message
    assert "cannot run" not in message


def test_a_state_database_a_non_root_user_cannot_open_says_run_as_root(
        tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mailopsd.core.errors import StateError
    from mailopsd.core.state import StateDB

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    blocked = os.path.join(str(tmp_path), "file")
    with open(blocked, "w"):
        pass
    with pytest.raises(StateError) as info:  # a state_dir below a regular file: cannot open
        StateDB(os.path.join(blocked, "state")).connect()
    assert "run as root" in str(info.value)


def test_a_bayes_owner_that_does_not_exist_is_named_with_its_key() -> None:
    from mailopsd.core.config import parse_config
    from mailopsd.core.errors import MailopsError
    from mailopsd.spam.bayes_db import BayesDB

    cfg = parse_config({"spamassassin": {"bayes_owner": "no-such-owner-x"}})
    with pytest.raises(MailopsError) as info:
        BayesDB.from_config(cfg)
    assert str(info.value) == "spamassassin.bayes_owner: no such user 'no-such-owner-x'"
