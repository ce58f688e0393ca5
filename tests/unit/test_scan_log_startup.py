"""scan-log's start-up shortcuts (issue 12 item 3) change nothing an operator sees: the host's
own addresses read over rtnetlink equal psutil's, and the parser built for scan-log alone
prints the same help and errors as the full one."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mailopsd.blocker import hostaddrs
from mailopsd.blocker.ignore import IgnoreList, host_addresses, psutil_addresses
from mailopsd.cli import main as cli_main


def test_netlink_addresses_equal_psutils() -> None:
    assert sorted(hostaddrs.netlink_addresses()) == sorted(psutil_addresses())
    assert "127.0.0.1" in host_addresses()


def test_a_malformed_netlink_answer_raises_oserror_not_anything_else() -> None:
    bad = [struct.pack("=IHHII", 8, 20, 0, 1, 0),  # length shorter than the header
           struct.pack("=IHHII", 400, 20, 0, 1, 0),  # length beyond the datagram
           struct.pack("=IHHII", 20, 2, 0, 1, 0) + b"\0" * 4]  # NLMSG_ERROR
    for data in bad:
        with pytest.raises(OSError):
            hostaddrs._parse(data, [])


def test_truncated_attributes_are_skipped_and_local_wins_over_peer() -> None:
    def rta(kind: int, payload: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)

    body = (struct.pack("=BBBBI", 2, 32, 0, 0, 3) + rta(1, bytes([10, 0, 0, 2]))
            + rta(2, bytes([10, 0, 0, 1])) + rta(1, b"\1\2"))  # a short IFA_ADDRESS: ignored
    msg = struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4
    out: list[str] = []
    assert hostaddrs._parse(msg + done, out) is True
    assert out == ["10.0.0.1"]  # IFA_LOCAL: on a point-to-point link IFA_ADDRESS is the peer


def test_ignore_list_falls_back_to_psutil_when_netlink_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(timeout: float = 2.0) -> list[str]:
        raise OSError("no netlink here")

    monkeypatch.setattr(hostaddrs, "netlink_addresses", broken)
    assert sorted(host_addresses()) == sorted(psutil_addresses())
    assert IgnoreList(host_addresses()).contains("127.0.0.1")


@pytest.mark.parametrize("argv", [["scan-log", "--help"], ["scan-log"],
                                  ["scan-log", "--log-level", "x", "f"]])
def test_scan_log_alone_parses_and_helps_like_the_full_parser(argv: list[str]) -> None:
    outs = []
    for only in (None, cli_main.ALONE["scan-log"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                pytest.raises(SystemExit) as exit_:
            cli_main.build_parser(only).parse_args(argv)
        outs.append((exit_.value.code, out.getvalue(), err.getvalue()))
    assert outs[0] == outs[1]
    assert "scan-log" in outs[0][1] + outs[0][2]


def _after_plain_scan_log(modules: str) -> str:
    """``rc sorted-list`` of ``modules`` (a generator expression over m in sys.modules) in a
    fresh interpreter that ran ``scan-log --no-config /dev/null``."""
    code = ("import sys; from mailopsd.cli.main import main; "
            "rc = main(['scan-log', '--no-config', '/dev/null']); "
            f"print(rc, sorted({modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().splitlines()[-1]


def test_scan_log_imports_neither_psutil_nor_the_other_commands() -> None:
    assert _after_plain_scan_log(
        "m for m in sys.modules if m == 'psutil' or m.startswith("
        "('mailopsd.cli.cmd_', 'mailopsd.core.config.loader'))") == "0 ['mailopsd.cli.cmd_scan']"


def test_scan_log_imports_none_of_the_costly_standard_modules_it_does_not_need() -> None:
    # typing ~1.2 ms, socket.py ~1 ms (its enums; _socket is the C half), datetime ~0.6 ms:
    # scan-log is timed start-up included (issue 12)
    assert _after_plain_scan_log(
        "m for m in ('typing', 'socket', 'datetime', 'threading') if m in sys.modules") == "0 []"


@pytest.mark.parametrize("argv", [
    ["scan-log", "--no-config", "f"], ["scan-log", "f", "--json", "--print-missed"],
    ["scan-log", "--no-ignore-self", "--print-matched", "--json", "--json", "f"],
    ["scan-log", "scan-log"]])
def test_a_plain_scan_log_command_line_parses_as_argparse_would_without_it(
        argv: list[str]) -> None:
    from mailopsd.cli.cmd_scan import plain_args

    fast = plain_args(argv)
    full = cli_main.build_parser().parse_args(argv)
    assert fast is not None and vars(fast) == vars(full)


@pytest.mark.parametrize("argv", [
    ["scan-log"], ["scan-log", "a", "b"], ["scan-log", "-"], ["scan-log", "--no-conf", "f"],
    ["scan-log", "--config", "c", "f"], ["scan-log", "--", "f"], ["scan-log", "-h"],
    ["--config", "c", "scan-log", "f"], ["scan-log", "--json=1", "f"]])
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    from mailopsd.cli.cmd_scan import plain_args

    assert plain_args(argv) is None


def test_a_plain_scan_log_does_not_import_argparse() -> None:
    assert _after_plain_scan_log("m for m in ('argparse',) if m in sys.modules") == "0 []"


def _console(argv: list[str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``mailopsd ARGV`` as the console script runs it (cli.main.run), output piped."""
    code = (f"import sys; {prelude}sys.argv = ['mailopsd', *{argv!r}]; "
            "from mailopsd.cli.main import run; run()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_scan_log_ends_without_teardown_but_with_all_its_output(tmp_path: Path) -> None:
    log = tmp_path / "mainlog"
    log.write_text("".join(f"2026-12-01 10:00:{s:02d} no host name found for IP address "
                           f"192.0.2.{s % 7}\n" for s in range(60)))
    done = _console(["scan-log", "--no-config", "--json", str(log)],
                    "import atexit; atexit.register(lambda: print('atexit ran')); ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("}\natexit ran\n")  # the handler ran after scan-log's output
    assert json.loads(done.stdout.removesuffix("atexit ran\n"))["lines"] == 60
    # the exit codes are main()'s: a missing file is a usage error
    missing = _console(["scan-log", "--no-config", str(tmp_path / "nope")])
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_other_commands_exit_through_the_interpreter() -> None:
    done = _console(["--version"])
    assert done.returncode == 0 and done.stdout.startswith("mailopsd ")
