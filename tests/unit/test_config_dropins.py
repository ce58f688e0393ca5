"""Drop-ins: <dir of the main file>/mailopsd.d/*.toml merge over it in byte order, key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailopsd.cli.main import main
from mailopsd.core.config import load_config
from mailopsd.core.config.loader import load_config_sources
from mailopsd.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def main_file(tmp_path: Path) -> Path:
    return write(tmp_path / "mailopsd.toml",
                 '[blocker]\nignore = ["192.0.2.0/24"]\npermanent_after = 3\n'
                 '[blocker.rules.auth-failed]\nmaxretry = 4\nfindtime = "20m"\n')


def test_dropins_merge_key_by_key_later_names_win(main_file: Path) -> None:
    d = main_file.parent / "mailopsd.d"
    write(d / "20-office.toml", '[blocker]\nignore = ["198.51.100.0/24"]\n')
    write(d / "10-rules.toml", '[blocker.rules.auth-failed]\nmaxretry = 9\n'
                               '[logging]\nlevel = "debug"\n')
    write(d / "30-level.toml", '[logging]\nlevel = "warning"\n')
    cfg = load_config(main_file)
    assert cfg.blocker.ignore == ("198.51.100.0/24",)  # a list is replaced, not appended
    assert cfg.blocker.permanent_after == 3  # untouched keys of a merged table stay
    rule = cfg.blocker.rules["auth-failed"]
    assert (rule.maxretry, rule.findtime) == (9, 1200)  # tables merge key by key
    assert cfg.logging.level == "warning"  # 30- is read after 10-


def test_only_toml_files_count_in_byte_order(main_file: Path) -> None:
    d = main_file.parent / "mailopsd.d"
    write(d / "Z.toml", '[logging]\nlevel = "error"\n')
    write(d / "a.toml", '[logging]\nlevel = "debug"\n')  # 'a' (0x61) sorts after 'Z' (0x5a)
    write(d / "b.toml.dpkg-old", "this is not toml")
    write(d / "c.conf", "nor this")
    write(d / ".hidden.toml", "nor this")
    cfg, sources = load_config_sources(main_file)
    assert cfg.logging.level == "debug"
    assert [Path(f).name for f in sources.files] == ["mailopsd.toml", "Z.toml", "a.toml"]


def test_a_bad_key_in_a_dropin_names_that_file(main_file: Path) -> None:
    bad = write(main_file.parent / "mailopsd.d" / "50-local.toml",
                '[blocker]\nmainlgo = "/x"\n[daemon]\nstop_timeout = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    found = {p.key: p.message for p in info.value.problems}
    assert str(bad) in found["blocker.mainlgo"] and "did you mean" in found["blocker.mainlgo"]
    assert str(bad) in found["daemon.stop_timeout"]


def test_a_syntax_error_in_a_dropin_names_that_file(main_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(main_file.parent / "mailopsd.d" / "50-broken.toml", "[blocker\n")
    assert main(["--config", str(main_file), "check-config"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_no_dropin_directory_is_fine(main_file: Path) -> None:
    cfg, sources = load_config_sources(main_file)
    assert sources.files == [str(main_file)]
    assert cfg.blocker.permanent_after == 3


def test_a_table_replaced_by_a_value_is_reported_naming_the_dropin(main_file: Path) -> None:
    bad = write(main_file.parent / "mailopsd.d" / "10-x.toml", 'blocker = "off"\n')
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    assert str(bad) in str(info.value)


def test_all_readable_says_no_when_a_dropin_is_unreadable(main_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from mailopsd.core.config.sources import all_readable

    secret = write(main_file.parent / "mailopsd.d" / "90-secret.toml", "")
    assert all_readable(main_file)
    real_access = __import__("os").access
    monkeypatch.setattr("os.access", lambda p, mode: str(p) != str(secret)
                        and real_access(p, mode))
    assert not all_readable(main_file)  # post-email then uses the defaults, not half a config
