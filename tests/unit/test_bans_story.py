"""Bans tell their story: evidence kept at ban time, ``bans show``, refusals, journal events.

The kernel is an in-memory backend here (tests/integration/test_bans_admin_word.py uses the real
one inside a namespace); the state database, the CLI and the journal socket are real.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailopsd.blocker.evidence import Evidence
from mailopsd.blocker.rules import rule_specs
from mailopsd.blocker.store import BanStore
from mailopsd.cli.main import main
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from tests.unit.test_bans_service import MemoryFirewall, line, make, wait


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for journald's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal.sock"))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.fixture
def cfg(tmp_path: Path, journal: socket.socket) -> Path:
    path = tmp_path / "mailopsd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/run"\n'
                    f'[logging]\ntarget = "json"\nlevel = "warning"\n'
                    f'journal_socket = "{tmp_path}/journal.sock"\n'
                    '[blocker]\nignore = ["198.51.100.0/24"]\n')
    return path


@pytest.fixture
def fw(monkeypatch: pytest.MonkeyPatch) -> MemoryFirewall:
    """Every backend the CLI makes is this one in-memory firewall."""
    mem = MemoryFirewall()
    monkeypatch.setattr("mailopsd.firewall.make_backend", lambda *_a, **_k: mem)
    monkeypatch.setattr("mailopsd.firewall.all_backends", lambda *_a, **_k: [mem])
    return mem


def bans(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["--config", str(cfg), "bans", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def entries(sock: socket.socket) -> list[dict[str, list[str]]]:
    """Every datagram waiting on the fake journal, as field -> values."""
    out = []
    sock.settimeout(0.2)
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            return out
        fields: dict[str, list[str]] = {}
        for raw in data.decode().splitlines():
            key, _, value = raw.partition("=")
            fields.setdefault(key, []).append(value)
        out.append(fields)


def test_evidence_is_the_lines_of_the_deciding_rule_and_address_at_most_count() -> None:
    cfg = parse_config({"blocker": {"rules": {"no-rdns": {"maxretry": 3}}}})
    ev = Evidence(rule_specs(cfg.blocker))
    now = time.time()
    sent = [line("192.0.2.7", now - 50 + i).rstrip("\n") for i in range(5)]
    for i, text in enumerate(sent):
        ev.add(text)
        ev.add(line("192.0.2.8", now - 50 + i))
    ev.add("2026-12-07 10:00:00 some unrelated line\n")
    got = ev.take("192.0.2.7", "no-rdns", 3, now - 60, now)
    assert got == sent[2:]
    assert ev.take("192.0.2.7", "no-rdns", 3, now - 60, now) == []  # taken once
    assert len(ev) == 1


def test_evidence_memory_is_bounded_by_addresses() -> None:
    cfg = parse_config({})
    ev = Evidence(rule_specs(cfg.blocker), max_addresses=100)
    for i in range(1000):
        ev.add(line(f"192.0.2.{i % 250}" if i < 250 else f"198.51.100.{i % 250}"))
    assert len(ev) <= 100


def test_daemon_ban_keeps_the_deciding_lines_and_show_prints_them(
        tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
        fw: MemoryFirewall) -> None:
    svc, _mem, mainlog = make(tmp_path)
    svc.start()
    try:
        with mainlog.open("a") as f:
            f.write(line("192.0.2.7") * 2 + line("198.51.100.1") + line("192.0.2.7") * 2)
        wait(lambda: (b := BanStore(svc.state).get("192.0.2.7")) is not None and b.active)
    finally:
        svc.stop(5)
    capsys.readouterr()  # the service's own events
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.7", "--json", "--no-kernel")
    assert rc == 0
    data = json.loads(out)
    assert data["banned"] and data["ban"]["rule"] == "no-rdns" and data["by"] == "mailopsd"
    assert len(data["evidence"]) == 3  # maxretry 3: the lines that decided it, no more
    assert all("192.0.2.7" in x for x in data["evidence"])
    assert data["ban"]["banned_at"].endswith(time.strftime("%z")[:3] + ":"
                                             + time.strftime("%z")[3:])
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.7", "--no-kernel")
    assert "banned by rule no-rdns" in out and "evidence (3 lines" in out


def test_add_refuses_an_address_already_banned_unless_update(
        cfg: Path, capsys: pytest.CaptureFixture[str], fw: MemoryFirewall,
        journal: socket.socket) -> None:
    assert bans(cfg, capsys, "add", "192.0.2.7", "-d", "1h")[0] == 0
    rc, out, err = bans(cfg, capsys, "add", "192.0.2.7", "-d", "2h", "-r", "again")
    assert rc == 1 and "192.0.2.7 is already banned: rule manual" in err and "--update" in err
    rc, out, err = bans(cfg, capsys, "add", "192.0.2.7", "-d", "2h", "-r", "again", "--update",
                        "--json")
    assert rc == 0
    done = json.loads(out)
    assert done["done"] and done["replaced"]["reason"] == "banned by hand"
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.7", "--json", "--no-kernel")
    data = json.loads(out)
    assert data["ban"]["reason"] == "again"
    assert [b["lifted_by"] for b in data["earlier_bans"]] == ["replaced"]
    got = entries(journal)
    assert [e["EVENT"] for e in got] == [["ip_banned"], ["ip_banned"]]
    assert all(e["IP"] == ["192.0.2.7"] and e["SOURCE"] == ["cli"] for e in got)


def test_an_address_inside_a_banned_network_is_named_by_add_and_remove(
        cfg: Path, capsys: pytest.CaptureFixture[str], fw: MemoryFirewall) -> None:
    assert bans(cfg, capsys, "add", "192.0.2.32/28")[0] == 0
    rc, _, err = bans(cfg, capsys, "add", "192.0.2.39")
    assert rc == 1 and "inside network 192.0.2.32/28" in err
    rc, out, err = bans(cfg, capsys, "remove", "192.0.2.39", "--json")
    assert rc == 1 and "inside the banned network 192.0.2.32/28" in err
    assert json.loads(out)["not_banned"] == [{"ip": "192.0.2.39", "inside": ["192.0.2.32/28"]}]
    assert "192.0.2.32/28" in fw.bans


def test_remove_and_flush_change_state_then_kernel_and_reach_the_journal(
        cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fw: MemoryFirewall,
        journal: socket.socket) -> None:
    for ip in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
        bans(cfg, capsys, "add", ip)
    entries(journal)
    rc, out, _ = bans(cfg, capsys, "remove", "192.0.2.21", "--json")
    assert rc == 0 and [b["ip"] for b in json.loads(out)["lifted"]] == ["192.0.2.21"]
    assert "192.0.2.21" not in fw.bans
    rc, out, _ = bans(cfg, capsys, "flush", "--json")
    data = json.loads(out)
    assert rc == 0 and sorted(b["ip"] for b in data["lifted"]) == ["192.0.2.22", "192.0.2.23"]
    assert data["daemon_pid"] is None and fw.bans == {}
    got = entries(journal)
    assert [e["EVENT"][0] for e in got] == ["ip_unbanned", "bans_flushed"]
    assert got[0]["IP"] == ["192.0.2.21"]
    assert sorted(got[1]["IP"]) == ["192.0.2.22", "192.0.2.23"] and got[1]["COUNT"] == ["2"]
    assert BanStore(StateDB(str(tmp_path / "state"))).active() == []


def test_list_marks_rows_where_kernel_and_state_disagree(
        cfg: Path, capsys: pytest.CaptureFixture[str], fw: MemoryFirewall) -> None:
    bans(cfg, capsys, "add", "192.0.2.11")
    bans(cfg, capsys, "add", "192.0.2.12")
    fw.bans.pop("192.0.2.12")          # flushed under us
    fw.bans["192.0.2.99"] = None       # added by hand in the kernel only
    rc, out, _ = bans(cfg, capsys, "list")
    rows = {ln.split()[0]: ln for ln in out.splitlines()[2:] if ln[:1].isdigit()}
    assert rc == 0
    assert " yes " in rows["192.0.2.11"] and "!" not in rows["192.0.2.11"]
    assert " no !" in rows["192.0.2.12"]
    assert "yes !" in rows["192.0.2.99"] and "only in the kernel" in rows["192.0.2.99"]
    data = {r["ip"]: r for r in json.loads(bans(cfg, capsys, "list", "--json")[1])}
    assert data["192.0.2.12"]["agrees"] is False and data["192.0.2.11"]["agrees"] is True
    assert data["192.0.2.99"] == {"ip": "192.0.2.99", "active": None, "in_state": False,
                                  "in_kernel": True, "agrees": False}


def test_show_of_an_unknown_address_exits_1(cfg: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.55", "--no-kernel")
    assert rc == 1 and "never banned" in out
    assert bans(cfg, capsys, "show", "nonsense")[0] == 2


def test_evidence_keeps_each_rules_lines_apart_per_address() -> None:
    cfg = parse_config({"blocker": {"rules": {"no-rdns": {"maxretry": 2},
                                              "auth-failed": {"maxretry": 3}}}})
    ev = Evidence(rule_specs(cfg.blocker))
    now = time.time()
    auth = [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now - 30 + i))} "
            "login_server authenticator failed for (x) [192.0.2.7]: 535 Incorrect "
            "authentication data" for i in range(4)]
    for i in range(4):
        ev.add(auth[i])
        ev.add(line("192.0.2.7", now - 20 + i))
    assert ev.take("192.0.2.7", "auth-failed", 3, now - 60, now) == auth[1:]


def test_a_kernel_check_right_after_a_cli_removal_does_not_put_the_ban_back(
        tmp_path: Path) -> None:
    svc, mem, _ = make(tmp_path)  # not started: no tick thread follows changes meanwhile
    now = time.time()
    for ip in ("192.0.2.71", "192.0.2.72"):
        svc.store.record(ip, "no-rdns", "", count=3, first_seen=now, last_seen=now,
                         expires=now + 3600)
    mem.restore({"192.0.2.71": 3600.0, "192.0.2.72": 3600.0})
    svc._banned.update({"192.0.2.71": now + 3600, "192.0.2.72": now + 3600})
    # what `mailopsd bans remove` does from another process: state first, then kernel
    cli = BanStore(StateDB(str(tmp_path / "state")), source="cli", journal=True)
    with svc.banlock.held():
        cli.lift(["192.0.2.71"], "cli")
        with cli._txn() as c:  # as if another pid wrote the change record
            c.execute("UPDATE ban_changes SET pid = 999999999")
        mem.unban("192.0.2.71")
    assert svc.verify(time.time()) == 0  # the kernel check reads the change first
    assert set(mem.bans) == {"192.0.2.72"}
    assert "192.0.2.71" not in svc._banned
    mem.bans.clear()  # a real loss (someone flushed the firewall) is still repaired
    assert svc.verify(time.time()) == 1 and set(mem.bans) == {"192.0.2.72"}


def test_show_never_sends_a_log_lines_escape_sequences_to_the_terminal(
        cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = "2026-12-07 10:00:00 H=(\x1b]0;owned\x07\x1b[2J) [192.0.2.61] rejected"
    BanStore(StateDB(str(tmp_path / "state"))).record(
        "192.0.2.61", "custom", "", count=1, first_seen=0, last_seen=0, expires=None,
        evidence=[hostile])
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.61", "--no-kernel")
    assert rc == 0 and "\x1b" not in out and "\x07" not in out
    assert "(\\x1b]0;owned\\x07\\x1b[2J)" in out
    rc, out, _ = bans(cfg, capsys, "show", "192.0.2.61", "--json", "--no-kernel")
    assert json.loads(out)["evidence"] == [hostile]  # JSON keeps it exact (escaped by JSON)
