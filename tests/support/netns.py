"""Network namespaces for tests: isolated test hosts joined by veth pairs.

Only documentation ranges are used (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32). Nothing here
touches the host's interfaces or firewall: veth ends are created directly inside the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.support.common import SupportError, random_suffix

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"

_PROBE = """
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    socket.create_connection((host, port), timeout=timeout).close()
    print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error:" + (exc.strerror or str(exc)))
"""


def _ip(*args: str, timeout: float = 15.0) -> str:
    res = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout,
                         check=False)
    if res.returncode != 0:
        raise SupportError(f"ip {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


ETC_NETNS = Path("/etc/netns")


def _private_name_files() -> dict[str, str]:
    """nsswitch.conf/hosts/resolv.conf for a namespace in which no address has a name.

    Without them a reverse lookup inside the namespace tries the host's DNS server, cannot reach
    it, and fails temporarily: Exim then logs nothing. With ``hosts: files`` and an empty hosts
    file, gethostbyaddr fails definitely and Exim (host_lookup_order = byaddr) logs
    "no host name found for IP address X", as for a real client without rDNS.
    """
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
    except FileNotFoundError:
        lines = ["passwd: files", "group: files", "shadow: files"]
    nss = [ln for ln in lines if not ln.startswith("hosts:")] + ["hosts: files"]
    return {"nsswitch.conf": "\n".join(nss) + "\n",
            "hosts": "# test network namespace: no address has a name\n",
            "resolv.conf": "# test network namespace: no DNS\n"}


class Netns:
    """A uniquely named network namespace (``mo-<pid>-<rand>``) with ``lo`` up.

    ``str(ns)`` is its name. Processes started with ``popen`` are killed (their process group)
    on exit; the namespace is then deleted. With ``private_names`` (default) programs run by
    ``ip netns exec`` in it see /etc/netns/NAME/{nsswitch.conf,hosts,resolv.conf}: no names, no
    DNS (see _private_name_files); that directory is removed on exit.
    """

    def __init__(self, prefix: str = "mo", *, private_names: bool = True) -> None:
        self.name = f"{prefix}-{os.getpid()}-{random_suffix(6)}"
        self.private_names = private_names
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created = False
        self._etc_dir: Path | None = None

    def __str__(self) -> str:
        return self.name

    def start(self) -> Netns:
        """``ip netns add`` and bring ``lo`` up; raises SupportError."""
        _ip("netns", "add", self.name)
        self._created = True
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            if self.private_names:
                self._etc_dir = ETC_NETNS / self.name
                self._etc_dir.mkdir(mode=0o755, parents=True)
                for fname, text in _private_name_files().items():
                    (self._etc_dir / fname).write_text(text)
                    (self._etc_dir / fname).chmod(0o644)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill what ``popen`` started (by process group), then ``ip netns delete``."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self._procs.clear()
        if self._etc_dir is not None:
            shutil.rmtree(self._etc_dir, ignore_errors=True)
            self._etc_dir = None
        if self._created:
            self._created = False
            _ip("netns", "delete", self.name)

    def __enter__(self) -> Netns:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec NAME``."""
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to completion (text output captured).

        Raises subprocess.CalledProcessError when ``check`` and it fails, TimeoutExpired.
        """
        res = subprocess.run(self.argv(argv), input=input, capture_output=True,
                             timeout=timeout, check=check)
        return subprocess.CompletedProcess(res.args, res.returncode,
                                           res.stdout.decode("utf-8", "replace"),
                                           res.stderr.decode("utf-8", "replace"))

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace in its own session; killed on ``stop()``."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            self.argv(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Pids of every process currently inside the namespace (``ip netns pids``)."""
        return [int(p) for p in _ip("netns", "pids", self.name).split()]


def veth_pair(ns_a: Netns, ns_b: Netns, addr_a: str = "192.0.2.1/24",
              addr_b: str = "192.0.2.2/24", addr6_a: str | None = None,
              addr6_b: str | None = None) -> tuple[str, str]:
    """Join two namespaces with a veth pair, address both ends, bring them up.

    Addresses are CIDR strings (IPv6 ones added with ``nodad`` so they work at once).
    Returns the interface names (a, b). Raises SupportError.
    """
    tag = random_suffix(6)
    if_a, if_b = f"mo{tag}a", f"mo{tag}b"  # <= 15 chars (IFNAMSIZ)
    # Created in ns_a with the peer placed straight into ns_b: the host never sees either end.
    _ip("-n", ns_a.name, "link", "add", if_a, "type", "veth", "peer", "name", if_b,
        "netns", ns_b.name)
    for ns, ifname, v4, v6 in ((ns_a, if_a, addr_a, addr6_a), (ns_b, if_b, addr_b, addr6_b)):
        if v4:
            _ip("-n", ns.name, "addr", "add", v4, "dev", ifname)
        if v6:
            _ip("-n", ns.name, "addr", "add", v6, "dev", ifname, "nodad")
        _ip("-n", ns.name, "link", "set", ifname, "up")
    return if_a, if_b


def tcp_probe(ns: Netns | str, host: str, port: int, timeout: float = 2.0) -> str:
    """Try one TCP connect from inside ``ns``: "connected", "refused", "timeout" or "error:...".

    A real SYN leaves the namespace's stack, so a firewall DROP shows as "timeout" and a
    REJECT (tcp-reset) as "refused".
    """
    argv = [IP, "netns", "exec", str(ns), sys.executable, "-I", "-S", "-c", _PROBE, host,
            str(port), str(timeout)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15,
                         check=False)
    if res.returncode != 0:
        raise SupportError(f"probe in {ns} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def tcp_connect(ns: Netns | str, host: str, port: int, timeout: float = 2.0) -> bool:
    """True if a TCP connection from inside ``ns`` to host:port is accepted."""
    return tcp_probe(ns, host, port, timeout) == "connected"


def iptables_bans(ns: Netns, chain: str = "mailopsd", v6: bool = True) -> list[str]:
    """Every ban the iptables backend holds in ``ns``, sorted, once per rule or set member (a
    double would show twice): members of the sets ``<chain>-v4``/``-v6`` (``ipset save``) and
    address rules in the chain (``iptables-legacy -S``), as canonical text (``192.0.2.7``).
    ``v6=False`` looks at IPv4 only (half the commands, for tight polling)."""
    out: list[str] = []
    for suffix in ("v4", "v6") if v6 else ("v4",):
        saved = ns.run(["ipset", "save", f"{chain}-{suffix}"], check=False).stdout
        out += [ln.split()[2] for ln in saved.splitlines() if ln.startswith("add ")]
    for cmd in ("iptables-legacy", "ip6tables-legacy") if v6 else ("iptables-legacy",):
        rules = ns.run([cmd, "-S", chain], check=False).stdout
        out += [ln.split()[3].removesuffix("/32").removesuffix("/128")
                for ln in rules.splitlines() if ln.startswith(f"-A {chain} -s ")]
    return sorted(out)
