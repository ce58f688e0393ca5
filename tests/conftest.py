"""Shared pytest set-up: import path for tests.support, root-only integration tests, test roots."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `from tests.support.exim import PrivateExim` must work however pytest was started.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support.common import root_required, scratch_root  # noqa: E402

__all__ = ["root_required"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests need root (users, netns, trusted Exim configs): skip them otherwise."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root")
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(skip)


@pytest.fixture
def mail_root() -> Iterator[Path]:
    """A 0755 scratch directory under /var/tmp (reachable by Debian-exim and test users)."""
    with scratch_root() as path:
        yield path
