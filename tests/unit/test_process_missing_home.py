"""A program run as a user whose home is gone says so, not "cannot run <program>"."""

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
