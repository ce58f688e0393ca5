"""``mailopsd config show [--non-default] [--json]``: the effective configuration, loadable."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from mailopsd.cli.main import main
from mailopsd.core.config import load_config, parse_config
from mailopsd.core.config.dump import duration_text, show_data

CONFIG = """\
[blocker]
ignore = ["192.0.2.0/24"]
[blocker.rules.auth-failed]
bantime = "permanent"
[blocker.rules.mine]
regex = '^x (?P<ip>\\S+) "q"'
[jobs.sa-update]
timeout = "90m"
[sent]
log_poll_interval = "250ms"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailopsd.toml"
    path.write_text(CONFIG)
    (tmp_path / "mailopsd.d").mkdir()
    (tmp_path / "mailopsd.d" / "10-level.toml").write_text('[logging]\nlevel = "debug"\n')
    return path


def show(config: Path, capsys: pytest.CaptureFixture[str], *opts: str) -> str:
    assert main(["--config", str(config), "config", "show", *opts]) == 0
    return capsys.readouterr().out


def test_show_prints_toml_that_loads_back_to_the_same_config(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = show(config, capsys)
    again = tmp_path / "again" / "mailopsd.toml"
    again.parent.mkdir()
    again.write_text(out)
    assert show_data(load_config(again)) == show_data(load_config(config))
    assert "10-level.toml" in out.splitlines()[0]  # the header names the files read


def test_non_default_lists_exactly_what_differs(config: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tomllib.loads(show(config, capsys, "--non-default"))
    assert data == {
        "logging": {"level": "debug"},
        "jobs": {"sa-update": {"timeout": "90m"}},
        "blocker": {"ignore": ["192.0.2.0/24"],
                    "rules": {"auth-failed": {"bantime": "permanent"},
                              "mine": {"regex": '^x (?P<ip>\\S+) "q"'}}},
        "sent": {"log_poll_interval": "250ms"},
    }


def test_show_gives_the_built_in_rules_values_in_force(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tomllib.loads(show(config, capsys))["blocker"]["rules"]
    assert rules["no-rdns"] == {"enabled": True, "maxretry": 11, "findtime": "1h",
                                "bantime": "1h"}
    assert rules["auth-failed"] == {"enabled": True, "maxretry": 5, "findtime": "10m",
                                    "bantime": "permanent"}
    assert rules["mine"]["maxretry"] == 5 and rules["mine"]["regex"].startswith("^x")


def test_a_rule_set_to_its_built_in_value_is_not_non_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mailopsd.toml"
    path.write_text('[blocker.rules.no-rdns]\nmaxretry = 11\nbantime = "2h"\n')
    data = tomllib.loads(show(path, capsys, "--non-default"))
    assert data == {"blocker": {"rules": {"no-rdns": {"bantime": "2h"}}}}


def test_json_gives_seconds_and_nulls(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(show(config, capsys, "--json"))
    assert data["jobs"]["sa-update"]["timeout"] == 5400
    assert data["jobs"]["sa-update"]["install"] is None
    assert data["daemon"]["state_dir"] == "/var/lib/mailopsd"
    nd = json.loads(show(config, capsys, "--non-default", "--json"))
    assert nd["sent"] == {"log_poll_interval": 0.25}


def test_defaults_alone_have_nothing_non_default(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "mailopsd.toml"
    empty.write_text("")
    assert tomllib.loads(show(empty, capsys, "--non-default")) == {}
    assert tomllib.loads(show(empty, capsys)) != {}


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (45, "45s"), (90, "90s"), (600, "10m"), (5400, "90m"), (86400, "1d"),
    (604800, "1w"), (0.2, "200ms"), (1.5, "1500ms"),
])
def test_durations_are_written_with_the_largest_exact_unit(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
    assert parse_config({"daemon": {"catch_up_delay": text}}).daemon.catch_up_delay == seconds
