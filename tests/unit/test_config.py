"""Config loading: every mistake reported at once with its dotted key; the sample is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailopsd.cli.main import main
from mailopsd.core.config import DEFAULT_CONFIG_PATH, config_path_from, load_config, parse_config
from mailopsd.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.key: p.message for p in info.value.problems}


def test_empty_config_gives_documented_defaults() -> None:
    cfg = parse_config({})
    assert cfg.daemon.state_dir == "/var/lib/mailopsd"
    assert cfg.jobs.get("learn-spam").schedule == "30 4 * * *"
    assert cfg.jobs.get("sa-update").random_delay == 3600
    assert cfg.spamassassin.bayes_owner == "Debian-exim"


def test_unknown_key_bad_cron_and_bad_path_are_all_reported_together() -> None:
    found = problems({
        "daemon": {"state_dir": "var/lib/mailopsd", "colour": "blue"},
        "jobs": {"learn-spam": {"schedule": "61 4 * * *"}},
    })
    assert set(found) == {"daemon.state_dir", "daemon.colour", "jobs.learn-spam.schedule"}
    assert "absolute path" in found["daemon.state_dir"]
    assert "unknown key" in found["daemon.colour"]


def test_wrong_types_name_what_was_expected() -> None:
    found = problems({"daemon": {"history_days": "ninety", "stop_timeout": "soon"},
                      "logging": {"level": "loud"}, "mailboxes": {"users": "alice"}})
    assert "integer" in found["daemon.history_days"]
    assert "duration" in found["daemon.stop_timeout"]
    assert "'debug'" in found["logging.level"]
    assert "list" in found["mailboxes.users"]


def test_snake_case_job_id_gets_a_did_you_mean_hint() -> None:
    found = problems({"jobs": {"learn_spam": {}}})
    assert "did you mean 'learn-spam'" in found["jobs.learn_spam"]


def test_cross_key_check_reports_the_key() -> None:
    found = problems({"mailboxes": {"min_uid": 2000, "max_uid": 1000},
                      "daemon": {"timezone": "Mars/Olympus"}})
    assert set(found) == {"mailboxes.min_uid", "daemon.timezone"}


def test_durations_accept_units_and_numbers() -> None:
    cfg = parse_config({"daemon": {"stop_timeout": "2m", "misfire_grace_time": 90,
                                   "catch_up_delay": "1.5h"}})
    assert cfg.daemon.stop_timeout == 120
    assert cfg.daemon.misfire_grace_time == 90
    assert cfg.daemon.catch_up_delay == 5400


def test_config_is_frozen() -> None:
    cfg = parse_config({})
    with pytest.raises(AttributeError):
        cfg.daemon.state_dir = "/tmp"  # type: ignore[misc]


def test_sample_config_in_etc_is_valid() -> None:
    cfg = load_config(REPO / "etc" / "mailopsd.toml")
    assert cfg.logging.syslog_identifier == "mailopsd"


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[daemon\nstate_dir = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].key == "(syntax)"


def test_config_path_precedence_cli_then_env_then_default() -> None:
    assert config_path_from("/a.toml", {"MAILOPSD_CONFIG": "/b.toml"}) == "/a.toml"
    assert config_path_from(None, {"MAILOPSD_CONFIG": "/b.toml"}) == "/b.toml"
    assert config_path_from(None, {}) == DEFAULT_CONFIG_PATH


def test_check_config_exits_2_naming_all_three_mistakes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "three.toml"
    path.write_text('[daemon]\nstate_dir = "relative"\nbogus = 1\n'
                    '[jobs.bayes-stats]\nschedule = "0 6 * * 1 2"\n')
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    for key in ("daemon.state_dir", "daemon.bogus", "jobs.bayes-stats.schedule"):
        assert key in err


def test_check_config_exits_0_on_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(REPO / "etc" / "mailopsd.toml"), "check-config"]) == 0
    assert "valid" in capsys.readouterr().out
