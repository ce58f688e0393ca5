"""``mailopsd bans``: listing and every refusal that happens before the kernel is touched."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailopsd.blocker.store import BanStore
from mailopsd.cli.main import main
from mailopsd.core.state import StateDB


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "mailopsd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/run"\n'
                    '[logging]\ntarget = "json"\nlevel = "warning"\n'
                    '[blocker]\nignore = ["198.51.100.0/24"]\n')
    return path


def run(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["--config", str(cfg), "bans", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list_shows_active_bans_and_history_on_request(
        cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = BanStore(StateDB(str(tmp_path / "state")))
    now = time.time()
    store.record("192.0.2.7", "no-rdns", "11 no-rdns matches within 1h", count=11,
                 first_seen=now - 60, last_seen=now, expires=now + 3600, now=now)
    store.record("2001:db8::/64", "auth-failed", "", count=5, first_seen=now, last_seen=now,
                 expires=None, now=now)
    store.record("192.0.2.8", "flood", "", count=30, first_seen=now, last_seen=now,
                 expires=now + 60, now=now)
    store.lift(["192.0.2.8"], "expired")
    rc, out, _ = run(cfg, capsys, "list", "--no-kernel")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["IP", "RULE", "COUNT", "BANNED", "EXPIRES", "TIMES", "KERNEL",
                                "REASON"]
    assert lines[2].split()[:3] == ["192.0.2.7", "no-rdns", "11"]
    assert "in 59m" in lines[2] or "in 1h" in lines[2]
    assert "permanent" in lines[3] and "192.0.2.8" not in out
    rc, out, _ = run(cfg, capsys, "list", "--all", "--json", "--no-kernel")
    rows = {r["ip"]: r for r in json.loads(out)}
    assert rows["192.0.2.8"]["active"] is False and rows["192.0.2.8"]["lifted_by"] == "expired"
    assert rows["192.0.2.8"]["expires_in"] is None
    assert rows["2001:db8::/64"]["expires_in"] is None
    assert 3500 < rows["192.0.2.7"]["expires_in"] <= 3600


@pytest.mark.parametrize(("args", "message"), [
    (("add", "not-an-ip"), "does not appear to be an IPv4 or IPv6"),
    (("add", "192.0.2.7", "--duration", "0"), "more than 0 seconds"),
    (("add", "198.51.100.9"), "ignore list"),
    (("add", "127.0.0.1"), "ignore list"),
    (("remove",), "give IP addresses or --all"),
    (("remove", "192.0.2.7", "--all"), "give IP addresses or --all"),
    (("remove", "192.0.2.300"), "does not appear"),
])
def test_refusals_exit_2_before_touching_the_kernel(
        cfg: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        message: str) -> None:
    rc, _, err = run(cfg, capsys, *args)
    assert rc == 2 and message in err


def test_bans_without_an_action_prints_help(cfg: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(cfg, capsys)
    assert rc == 2 and "list" in err and "flush" in err
