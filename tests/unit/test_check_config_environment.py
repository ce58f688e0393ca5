"""check-config looks at the machine: paths, users, programs, templates, each by dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailopsd.cli.main import main
from mailopsd.core.config import parse_config
from mailopsd.core.config.environment import check_environment


def findings(data: dict) -> dict[str, str]:
    return {f.key: f.message for f in check_environment(parse_config(data))}


def run(tmp_path: Path, text: str, *extra: str) -> int:
    path = tmp_path / "mailopsd.toml"
    path.write_text(text)
    return main(["--config", str(path), "check-config", *extra])


def test_a_mainlog_in_a_missing_directory_is_reported(tmp_path: Path) -> None:
    found = findings({"blocker": {"mainlog": str(tmp_path / "nodir" / "mainlog")}})
    assert "does not exist" in found["blocker.mainlog"]


def test_a_mainlog_not_written_yet_is_fine_but_a_near_name_is_suggested(tmp_path: Path) -> None:
    assert "blocker.mainlog" not in findings({"blocker": {"mainlog": str(tmp_path / "mainlog")}})
    (tmp_path / "mainlog").write_text("")
    found = findings({"blocker": {"mainlog": str(tmp_path / "mainlg")}})
    assert "did you mean" in found["blocker.mainlog"]
    assert str(tmp_path / "mainlog") in found["blocker.mainlog"]


def test_an_unknown_bayes_owner_is_reported_with_the_key_and_a_suggestion() -> None:
    found = findings({"spamassassin": {"bayes_owner": "Debian-exin"}})
    assert "no such user 'Debian-exin'" in found["spamassassin.bayes_owner"]
    assert "did you mean 'Debian-exim'" in found["spamassassin.bayes_owner"]


def test_the_bayes_owner_is_not_checked_when_no_bayes_job_runs() -> None:
    off = {"enabled": False}
    found = findings({"spamassassin": {"bayes_owner": "nobody-such"},
                      "jobs": {"learn-spam": off, "bayes-backup": off, "bayes-stats": off}})
    assert "spamassassin.bayes_owner" not in found


def test_a_missing_binary_is_reported_only_when_a_feature_uses_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nft")
    assert "binaries.nft" not in findings({"binaries": {"nft": missing}})
    found = findings({"binaries": {"nft": missing},
                      "blocker": {"firewall": {"backend": "nftables"}}})
    assert missing in found["binaries.nft"] and "install" in found["binaries.nft"]


def test_a_template_that_is_missing_or_not_an_exim_filter_is_reported(tmp_path: Path) -> None:
    gone = findings({"jobs": {"make-forwards": {"template": str(tmp_path / "none")}}})
    assert "does not exist" in gone["jobs.make-forwards.template"]
    plain = tmp_path / "forward.template"
    plain.write_text("alice@example.org\n")
    bad = findings({"jobs": {"make-forwards": {"template": str(plain)}}})
    assert "# Exim filter" in bad["jobs.make-forwards.template"]


def test_warnings_exit_0_and_strict_makes_them_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = f'[blocker]\nmainlog = "{tmp_path}/nodir/mainlog"\n'
    assert run(tmp_path, text) == 0
    err = capsys.readouterr().err
    assert "warning: blocker.mainlog:" in err
    assert run(tmp_path, text, "--strict") == 2
    assert "error: blocker.mainlog:" in capsys.readouterr().err


def test_not_root_says_run_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert run(tmp_path, "", "--strict") == 2
    assert "run as root" in capsys.readouterr().err


def test_an_unreadable_config_as_non_root_says_run_as_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mailopsd.toml"
    path.write_text("")
    path.chmod(0)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    assert main(["--config", str(path), "check-config"]) == 2
    assert "run as root" in capsys.readouterr().err


def test_a_missing_journal_socket_matters_only_when_journald_is_forced(tmp_path: Path) -> None:
    gone = str(tmp_path / "socket")
    assert "logging.journal_socket" not in findings({"logging": {"journal_socket": gone}})
    found = findings({"logging": {"journal_socket": gone, "target": "journald"}})
    assert gone in found["logging.journal_socket"]


def test_a_misspelt_mainlog_is_pointed_out_before_exim_ever_wrote_it(tmp_path: Path) -> None:
    found = findings({"blocker": {"mainlog": str(tmp_path / "mainlg")}})
    assert "did you mean" in found["blocker.mainlog"]
    assert str(tmp_path / "mainlog") in found["blocker.mainlog"]
