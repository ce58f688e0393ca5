"""The legacy x_tables side of the iptables backend: python-iptables rules and the xtables lock.

Rules are built and recognised here (pure functions of python-iptables objects); the backend in
``iptables.py`` decides what goes where. python-iptables (libiptc) is imported lazily: it loads
libip4tc/libxtables, which ``mailopsd --help`` does not need.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from mailopsd.core.errors import FirewallError
from mailopsd.firewall.base import canonical

XTABLES_LOCK = "/run/xtables.lock"
# python-iptables' Table objects are per-process singletons, and the ipset socket is shared:
# every kernel change of the backend runs under this lock
PROCESS_LOCK = threading.RLock()


def iptc() -> Any:
    """Import python-iptables lazily; raises FirewallError."""
    try:
        import iptc as mod
    except (ImportError, OSError) as exc:  # missing shared libraries show up as OSError
        raise FirewallError(f"python-iptables is unusable: {exc}") from exc
    return mod


class XtablesLock:
    """The ``/run/xtables.lock`` flock that ``iptables-legacy -w`` takes too."""

    def __init__(self, path: str, timeout: float, log: Any) -> None:
        self.path = path
        self.timeout = timeout
        self.log = log
        self._warned = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the process lock and the flock (waiting up to ``timeout``)."""
        with PROCESS_LOCK:
            fd = self._take()
            try:
                yield
            finally:
                if fd is not None:
                    os.close(fd)

    def _take(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # a read-only /run (a sandboxed unit) must not stop banning: go on unlocked
            if not self._warned:
                self.log.warning("xtables_lock_unavailable", path=self.path, error=str(exc))
                self._warned = True
            return None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise FirewallError(f"cannot take {self.path} within "
                                        f"{self.timeout:.0f}s: {exc}") from None
                time.sleep(0.005)


def is_v6_table(table: Any) -> bool:
    """Whether a python-iptables table is the IPv6 one."""
    return isinstance(table, iptc().Table6)


def new_rule(table: Any) -> Any:
    """An empty rule of the table's family."""
    mod = iptc()
    return mod.Rule6() if is_v6_table(table) else mod.Rule()


def verdict(rule: Any, reject: bool) -> Any:
    """Give ``rule`` our action: DROP, or REJECT with a TCP reset (which demands ``-p tcp``)."""
    rule.protocol = "tcp"
    target = rule.create_target("REJECT" if reject else "DROP")
    if reject:
        target.reject_with = "tcp-reset"
    return rule


def address_rule(table: Any, ip: str, reject: bool) -> Any:
    """``-s IP -p tcp -j DROP|REJECT``: one ban as one rule."""
    rule = new_rule(table)
    rule.src = ip
    return verdict(rule, reject)


def set_rule(table: Any, set_name: str, reject: bool) -> Any:
    """``-p tcp -m set --match-set SET src -j DROP|REJECT``: every ban of a family at once."""
    rule = new_rule(table)
    rule.protocol = "tcp"
    match = rule.create_match("set")
    match.match_set = [set_name, "src"]
    return verdict(rule, reject)


def set_rule_of(rule: Any) -> str | None:
    """The set a ``-m set --match-set SET src`` rule matches, or None for any other rule."""
    for m in rule.matches:
        if m.name == "set":
            words = str(m.parameters.get("match_set", "")).split()
            return words[0] if words else ""
    return None


def is_set_rule(rule: Any, set_name: str, reject: bool) -> bool:
    """Whether ``rule`` is exactly our set rule for ``set_name`` with the action in force."""
    if rule.protocol != "tcp" or len(rule.matches) != 1 or rule.matches[0].name != "set":
        return False
    if str(rule.matches[0].parameters.get("match_set", "")).split() != [set_name, "src"]:
        return False
    if str(rule.src) not in ("0.0.0.0/0.0.0.0", "::/0") or rule.target is None:
        return False
    want = "REJECT" if reject else "DROP"
    if rule.target.name != want:
        return False
    return not reject or rule.target.parameters.get("reject_with") == "tcp-reset"


def jump_rule(table: Any, chain: str, ports: tuple[int, ...]) -> Any:
    """``-A INPUT -p tcp -m multiport --dports PORTS -j CHAIN``."""
    rule = new_rule(table)
    rule.protocol = "tcp"
    match = rule.create_match("multiport")
    match.dports = ",".join(str(p) for p in ports)
    rule.create_target(chain)
    return rule


def is_jump_to(rule: Any, chain: str) -> bool:
    """Whether ``rule`` jumps to ``chain``."""
    return bool(rule.target is not None and rule.target.name == chain)


def jump_matches(rule: Any, ports: tuple[int, ...]) -> bool:
    """Whether a jump rule is exactly ours for ``ports``."""
    if rule.protocol != "tcp" or len(rule.matches) != 1 or str(rule.src) not in (
            "0.0.0.0/0.0.0.0", "::/0"):
        return False
    m = rule.matches[0]
    return bool(m.name == "multiport" and m.parameters.get("dports") ==
                ",".join(str(p) for p in ports))


def set_rules(table: Any, chain: str) -> list[Any]:
    """The set rules in ``chain``, as Rule objects (address rules are skipped unparsed).

    Parsing a rule costs ~50 us, so a chain of 10,000 address rules is walked as raw entries
    and only the entries without a source address become Rule objects.
    """
    out: list[Any] = []
    if not table.is_chain(chain):
        return out
    v6 = is_v6_table(table)
    owner = iptc().Chain(table, chain)
    entry = table.first_rule(chain)
    while entry:
        ip = entry.ipv6 if v6 else entry.ip
        if not any(bytes(ip.smsk)):
            rule = table.create_rule(entry, owner)
            if set_rule_of(rule) is not None:
                out.append(rule)
        entry = table.next_rule(entry)
    return out


def scan_addresses(table: Any, chain: str) -> dict[str, int]:
    """Ban target -> rule count of the per-address rules in ``chain`` (raw entries: fast at 10k).

    Rules without a source (the set rules) are not bans of one address and are skipped.
    """
    out: dict[str, int] = {}
    if not table.is_chain(chain):
        return out
    v6 = is_v6_table(table)
    entry = table.first_rule(chain)
    while entry:
        ip = entry.ipv6 if v6 else entry.ip
        plen = sum(bin(b).count("1") for b in bytes(ip.smsk))
        if plen:
            key = canonical(f"{ipaddress.ip_address(bytes(ip.src))}/{plen}")
            out[key] = out.get(key, 0) + 1
        entry = table.next_rule(entry)
    return out
