"""``mailopsd sent-fixup`` as an admin meets it: real passwd users, one of them without a home."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.cli.main import main
from tests.support.common import scratch_root
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


@pytest.fixture
def site() -> Iterator[tuple[Path, TestUser, TestUser]]:
    with scratch_root("mailopsd-sentfix-") as root, TestUser(root) as ok, \
            TestUser(root, maildir=False) as homeless:
        shutil.rmtree(homeless.home)
        (root / "log").mkdir()
        (root / "log" / "sent-recipients").write_text("")
        yield root, ok, homeless


def config(root: Path, users: list[str], enabled: bool) -> str:
    path = root / "mailopsd.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{root}/state"\nrun_dir = "{root}/run"\n'
        f'[logging]\ntarget = "console"\n'
        f'[mailboxes]\nusers = {users!r}\n'.replace("'", '"')
        + f'[sent]\nenabled = {str(enabled).lower()}\n'
          f'recipients_log = "{root}/log/sent-recipients"\n')
    return str(path)


def test_a_user_without_a_home_is_named_and_the_others_are_done(
        site: tuple[Path, TestUser, TestUser], capsys: pytest.CaptureFixture[str]) -> None:
    root, ok, homeless = site
    path = config(root, [homeless.name, ok.name], enabled=True)
    assert main(["--config", path, "sent-fixup"]) == 0
    out, err = capsys.readouterr()
    assert homeless.name in err and "home directory does not exist" in err
    assert "Traceback" not in err
    assert "users skipped" in out


def test_refuses_with_exit_2_while_sent_is_disabled_unless_forced(
        site: tuple[Path, TestUser, TestUser], capsys: pytest.CaptureFixture[str]) -> None:
    root, ok, _homeless = site
    path = config(root, [ok.name], enabled=False)
    assert main(["--config", path, "sent-fixup"]) == 2
    assert "enabled = false" in capsys.readouterr().err
    assert not (root / "state").exists()  # refused before touching anything
    assert main(["--config", path, "sent-fixup", "--force"]) == 0


def test_as_non_root_it_says_run_as_root(site: tuple[Path, TestUser, TestUser],
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root, ok, _homeless = site
    path = config(root, [ok.name], enabled=True)
    monkeypatch.setattr("os.geteuid", lambda: ok.uid)
    assert main(["--config", path, "sent-fixup"]) == 2
    err = capsys.readouterr().err
    assert "run as root" in err and "unable to open database" not in err
