"""PrivateExim: a real Exim 4.96 daemon from a generated config, for integration tests.

Usage::

    with scratch_root() as root, PrivateExim(root, auth_users={"alice": "secret"}) as exim:
        smtplib.SMTP("127.0.0.1", exim.port) ...
        exim.wait_for_log(r"no host name found for IP address 127\\.0\\.0\\.1")
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import smtplib
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tests.support.common import (
    SupportError,
    descendants,
    free_port,
    kill_pid,
    listening,
    make_test_root,
    read_pid,
    remove_test_root,
    wait_until,
)
from tests.support.exim_config import FAST_RETRY, render_auth_file, render_config
from tests.support.trusted import add_trusted_config, remove_trusted_config

if TYPE_CHECKING:
    from tests.support.netns import Netns

# Debian's exim4 (4.96). MAILOPSD_TEST_EXIM names another build to run the same tests against,
# e.g. a newer Exim built from source for the log fields 4.96 cannot write (Ci=, Exim 4.98+);
# it must read its trusted configs from /etc/exim4/trusted_configs (TRUSTED_CONFIG_LIST).
EXIM = os.environ.get("MAILOPSD_TEST_EXIM") or "/usr/sbin/exim4"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def check_traversable(path: Path) -> None:
    """Raise SupportError unless every directory from / down to ``path`` is world-searchable.

    Debian-exim and the test users must reach files under the root (pytest's tmp_path is 0700).
    """
    for p in [*reversed(path.parents), path]:
        if not os.stat(p).st_mode & stat.S_IXOTH:
            raise SupportError(f"{p} is not world-searchable; use common.scratch_root()")


class PrivateExim:
    """A private Exim daemon under ``root`` (one per root). See tests/support/README.md."""

    def __init__(self, root: Path | None = None, *, listen: str | Sequence[str] = "127.0.0.1",
                 port: int | None = None, netns: Netns | str | None = None,
                 host_lookup_bydns: bool = True, host_lookup: str = "*", variant: str = "",
                 log_selector: str = "", system_filter: str | None = None,
                 extra_transports: str = "",
                 local_domains: Sequence[str] = ("example.test", "localhost"),
                 relay_from_hosts: Sequence[str] = (),
                 auth_users: Mapping[str, str] | None = None, sink_port: int | None = None,
                 sink_host: str = "127.0.0.1",
                 pipelining_connect_advertise_hosts: str | None = None,
                 retry: str = FAST_RETRY, userforward: bool = False, extra_routers: str = "",
                 extra_acl_rcpt: str = "", queue_interval: str | None = None,
                 start_timeout: float = 15.0) -> None:
        self._own_root = root is None
        self.root = (root or make_test_root("mailopsd-exim-")).resolve()
        self.listen = [listen] if isinstance(listen, str) else list(listen)
        self.netns = None if netns is None else str(netns)
        # Inside a Netns (private_names) DNS is unreachable and would only defer the lookup;
        # byaddr against its empty hosts file fails definitely, like a client without rDNS.
        order = ("byaddr" if self.netns is not None else "bydns") if host_lookup_bydns \
            else "bydns:byaddr"
        # In another namespace any port is free; on the host pick one nobody holds now.
        self.port = port or (free_port("127.0.0.1") if self.netns is None else 2525)
        self.auth_users = dict(auth_users if auth_users is not None else {"alice": "secret"})
        self.system_filter = system_filter
        self.queue_interval = queue_interval
        self.start_timeout = start_timeout
        self._config_text = render_config(
            self.root, listen=self.listen, port=self.port, host_lookup_order=order,
            host_lookup=host_lookup, variant=variant, log_selector=log_selector,
            system_filter=system_filter is not None, extra_transports=extra_transports,
            local_domains=local_domains, relay_from_hosts=relay_from_hosts,
            sink_host=sink_host if sink_port is not None else None, sink_port=sink_port,
            pipelining_connect_advertise_hosts=pipelining_connect_advertise_hosts, retry=retry,
            userforward=userforward, extra_routers=extra_routers, extra_acl_rcpt=extra_acl_rcpt)
        self._proc: subprocess.Popen[bytes] | None = None
        self._trusted = False

    # -- paths --------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "exim.conf"

    @property
    def mainlog(self) -> Path:
        return self.root / "log" / "mainlog"

    @property
    def rejectlog(self) -> Path:
        return self.root / "log" / "rejectlog"

    @property
    def paniclog(self) -> Path:
        return self.root / "log" / "paniclog"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def pid(self) -> int | None:
        """The daemon's pid from its pid file (None before start / after stop)."""
        return read_pid(self.root / "exim.pid")

    # -- lifecycle ----------------------------------------------------------------------
    def write_files(self) -> None:
        """Write config, auth file and filter under root (start() does this); no daemon."""
        check_traversable(self.root)
        exim_pw = pwd.getpwnam("Debian-exim")
        for sub in ("spool", "log"):
            d = self.root / sub
            d.mkdir(mode=0o750, exist_ok=True)
            os.chown(d, exim_pw.pw_uid, exim_pw.pw_gid)
        files = {"exim.conf": self._config_text,
                 "auth_users": render_auth_file(self.auth_users)}
        if self.system_filter is not None:
            files["system.filter"] = self.system_filter.replace("@ROOT@", str(self.root))
        for name, text in files.items():
            path = self.root / name
            path.write_text(text, encoding="utf-8")
            os.chown(path, 0, 0)
            # Root-owned and not group/world writable, or Exim drops privilege for -C.
            path.chmod(0o644 if name != "auth_users" else 0o640)
            if name == "auth_users":
                os.chown(path, 0, exim_pw.pw_gid)

    def _wrap(self, argv: Sequence[str], in_netns: bool = True) -> list[str]:
        if self.netns is not None and in_netns:
            return ["ip", "netns", "exec", self.netns, *argv]
        return list(argv)

    def check_config(self) -> str:
        """Run ``exim -bV`` on the written config; raise SupportError with its output if bad."""
        res = self.exim("-bV", timeout=10, in_netns=False)
        if res.returncode != 0:
            raise SupportError(f"exim -bV failed:\n{res.stdout}{res.stderr}")
        return res.stdout

    def start(self) -> PrivateExim:
        """Write the config, trust it, start ``exim -bdf`` and wait until it listens.

        Raises SupportError (with Exim's output) or TimeoutError; cleans up on failure.
        """
        try:
            self.write_files()
            add_trusted_config(self.config_path)
            self._trusted = True
            self.check_config()
            argv = [EXIM, "-C", str(self.config_path), "-bdf"]
            if self.queue_interval:
                argv.append(f"-q{self.queue_interval}")
            out = open(self.root / "exim-daemon.out", "wb")  # noqa: SIM115 (child keeps it)
            with out:
                self._proc = subprocess.Popen(self._wrap(argv), stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                              cwd="/", start_new_session=True)
            proc = self._proc

            def ready() -> bool:
                if proc.poll() is not None:
                    text = (self.root / "exim-daemon.out").read_text(errors="replace")
                    panic = self.paniclog.read_text(errors="replace") if \
                        self.paniclog.exists() else ""
                    raise SupportError(f"exim daemon exited ({proc.returncode}): {text}{panic}")
                return self.pid == proc.pid and listening(proc.pid, self.port)

            wait_until(ready, self.start_timeout, what=f"exim to listen on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill exactly the daemon's pid (from its pid file), then the SMTP/delivery processes
        it forked that are still running, and untrust the config (always)."""
        try:
            proc, self._proc = self._proc, None
            if proc is not None:
                pid = read_pid(self.root / "exim.pid")
                # Snapshot first: once the daemon is gone its children are reparented.
                children = descendants(proc.pid)
                if pid is not None and pid != proc.pid and pid > 1:
                    kill_pid(pid)  # should not happen with -bdf, but stop what the file names
                if proc.poll() is None:
                    kill_pid(proc.pid)
                proc.wait(timeout=10)
                for child in children:
                    kill_pid(child)
                with contextlib.suppress(FileNotFoundError):
                    (self.root / "exim.pid").unlink()
        finally:
            if self._trusted:
                remove_trusted_config(self.config_path)
                self._trusted = False
            if self._own_root:
                remove_test_root(self.root)

    def __enter__(self) -> PrivateExim:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- running exim -------------------------------------------------------------------
    def exim(self, *args: str, input: str | bytes | None = None, timeout: float = 30.0,
             in_netns: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``exim4 -C <config> ARGS`` (in the daemon's netns unless ``in_netns=False``).

        Returns the finished process with text output; does not raise on a non-zero exit.
        Raises subprocess.TimeoutExpired after ``timeout`` seconds.
        """
        data = input.encode() if isinstance(input, str) else input
        res = subprocess.run(self._wrap([EXIM, "-C", str(self.config_path), *args], in_netns),
                             input=data, capture_output=True, timeout=timeout, env=ENV,
                             cwd="/", check=False)
        return subprocess.CompletedProcess(res.args, res.returncode,
                                           res.stdout.decode("utf-8", "replace"),
                                           res.stderr.decode("utf-8", "replace"))

    def smtp(self, timeout: float = 10.0) -> smtplib.SMTP:
        """An smtplib client connected to the daemon (host netns only); the caller quits it."""
        if self.netns is not None:
            raise SupportError("the daemon runs in a netns: connect from inside it (Netns.run)")
        return smtplib.SMTP(self.listen[0], self.port, timeout=timeout)

    def queue_count(self) -> int:
        """Messages in the queue (``exim -bpc``)."""
        res = self.exim("-bpc", timeout=10, in_netns=False)
        if res.returncode != 0:
            raise SupportError(f"exim -bpc failed: {res.stderr}")
        return int(res.stdout.strip() or 0)

    def run_queue(self, *, force: bool = True, frozen: bool = False,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """One foreground queue run: ``-qff`` (frozen too), ``-qf`` (ignore retry times), ``-q``."""
        flag = "-qff" if frozen else "-qf" if force else "-q"
        return self.exim(flag, timeout=timeout)

    # -- logs ---------------------------------------------------------------------------
    def _log(self, which: str) -> Path:
        return {"main": self.mainlog, "reject": self.rejectlog, "panic": self.paniclog}[which]

    def log_text(self, which: str = "main", since: int = 0) -> str:
        """The log's text from byte offset ``since`` ("" if it does not exist yet)."""
        try:
            with open(self._log(which), "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def mark(self, which: str = "main") -> int:
        """The log's current size: pass as ``since`` to only see lines written afterwards."""
        try:
            return self._log(which).stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_log(self, regex: str, timeout: float = 10.0, which: str = "main",
                     since: int = 0) -> re.Match[str]:
        """Poll the log until ``regex`` matches a line (multiline mode); return the match.

        Raises TimeoutError (with the log's tail) if it does not appear in time.
        """
        pattern = re.compile(regex, re.MULTILINE)
        try:
            return wait_until(lambda: pattern.search(self.log_text(which, since)), timeout,
                              what=f"{regex!r} in {which}log")
        except TimeoutError as exc:
            tail = "\n".join(self.log_text(which, since).splitlines()[-15:])
            raise TimeoutError(f"{exc}; {which}log tail:\n{tail}") from None


def exim_available() -> bool:
    """True if /usr/sbin/exim4 and the Debian-exim user exist."""
    try:
        pwd.getpwnam("Debian-exim")
    except KeyError:
        return False
    return shutil.which(EXIM) is not None
