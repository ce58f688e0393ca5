"""python-iptables backend: one rule per ban in a chain of our own, in the LEGACY x_tables.

Layout (shown as ``iptables-legacy -S``; ``ip6tables-legacy -S`` likewise for IPv6)::

    -N mailopsd
    -A INPUT -p tcp -m multiport --dports 25,465 -j mailopsd
    -A mailopsd -s 192.0.2.7/32 -p tcp -j DROP

python-iptables drives libiptc, which replaces a whole table per commit. Every change therefore
runs as refresh (read the table) -> edit -> one commit, under a process-wide lock (the ``Table``
objects are per-process singletons) and the ``/run/xtables.lock`` flock that ``iptables-legacy``
itself takes, so a concurrent ``mailopsd bans`` or admin command never loses our change or theirs.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import ipaddress
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mailopsd.core.config.schema_firewall import FirewallConfig
from mailopsd.core.errors import FirewallError
from mailopsd.core.logs import get_logger
from mailopsd.firewall.base import FirewallBackend, canonical, canonical_bans, is_v6

XTABLES_LOCK = "/run/xtables.lock"
_PROCESS_LOCK = threading.RLock()


def _iptc() -> Any:
    """Import python-iptables lazily (it loads libip4tc/libxtables); raises FirewallError."""
    try:
        import iptc
    except (ImportError, OSError) as exc:  # missing shared libraries show up as OSError
        raise FirewallError(f"python-iptables is unusable: {exc}") from exc
    return iptc


class IptablesBackend(FirewallBackend):
    """Bans as ``-s IP -p tcp -j DROP|REJECT`` rules in a dedicated chain (IPv4 and IPv6)."""

    name = "iptables"

    def __init__(self, config: FirewallConfig, lock_path: str = XTABLES_LOCK) -> None:
        self.chain = config.iptables_chain
        self.ports = tuple(config.ports)
        self.reject = config.action == "reject"
        self.ipv6 = config.ipv6
        self.timeout = float(config.timeout)
        self.lock_path = lock_path
        self.log = get_logger("firewall")
        self._lock_warned = False

    # -- locking and tables -------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the process lock and the xtables flock (waiting up to ``timeout``)."""
        with _PROCESS_LOCK:
            fd = self._xtables_lock()
            try:
                yield
            finally:
                if fd is not None:
                    os.close(fd)

    def _xtables_lock(self) -> int | None:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # a read-only /run (a sandboxed unit) must not stop banning: go on unlocked
            if not self._lock_warned:
                self.log.warning("xtables_lock_unavailable", path=self.lock_path, error=str(exc))
                self._lock_warned = True
            return None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise FirewallError(f"cannot take {self.lock_path} within "
                                        f"{self.timeout:.0f}s: {exc}") from None
                time.sleep(0.005)

    def _tables(self, v6_only: bool | None = None, all_families: bool = False) -> list[Any]:
        """The filter tables to work on, refreshed (fresh snapshot, autocommit off)."""
        iptc = _iptc()
        fams = [False, True] if (self.ipv6 or all_families) else [False]
        if v6_only is not None:
            fams = [v6_only]
        tables = []
        for v6 in fams:
            try:
                t = (iptc.Table6 if v6 else iptc.Table)(iptc.Table.FILTER, autocommit=False)
                t.refresh()
            except iptc.IPTCError as exc:
                if v6 and all_families and not self.ipv6:
                    continue  # flush: no IPv6 tables, so nothing of ours there either
                hint = " (set blocker.firewall.ipv6 = false if IPv6 is off)" if v6 else ""
                raise FirewallError(f"cannot open the {'IPv6' if v6 else 'IPv4'} filter "
                                    f"table: {exc}{hint}") from exc
            tables.append(t)
        return tables

    def _rule(self, table: Any, ip: str, reject: bool | None = None) -> Any:
        iptc = _iptc()
        reject = self.reject if reject is None else reject
        rule = iptc.Rule6() if isinstance(table, iptc.Table6) else iptc.Rule()
        rule.src = ip
        rule.protocol = "tcp"  # the kernel's REJECT --reject-with tcp-reset demands -p tcp
        target = rule.create_target("REJECT" if reject else "DROP")
        if reject:
            target.reject_with = "tcp-reset"
        return rule

    def _jump(self, table: Any) -> Any:
        iptc = _iptc()
        rule = iptc.Rule6() if isinstance(table, iptc.Table6) else iptc.Rule()
        rule.protocol = "tcp"
        match = rule.create_match("multiport")
        match.dports = ",".join(str(p) for p in self.ports)
        rule.create_target(self.chain)
        return rule

    def _is_our_jump(self, rule: Any) -> bool:
        return bool(rule.target is not None and rule.target.name == self.chain)

    def _jump_matches(self, rule: Any) -> bool:
        if rule.protocol != "tcp" or len(rule.matches) != 1 or str(rule.src) not in (
                "0.0.0.0/0.0.0.0", "::/0"):
            return False
        m = rule.matches[0]
        return bool(m.name == "multiport" and m.parameters.get("dports") ==
                    ",".join(str(p) for p in self.ports))

    def _ensure(self, table: Any) -> None:
        """Chain present and exactly one correct jump at the top of INPUT (no commit)."""
        iptc = _iptc()
        if not table.is_chain(self.chain):
            table.create_chain(self.chain)
        inp = iptc.Chain(table, "INPUT")
        jumps = [r for r in inp.rules if self._is_our_jump(r)]
        first = inp.rules[0] if inp.rules else None
        if (len(jumps) == 1 and self._jump_matches(jumps[0]) and first is not None
                and self._is_our_jump(first)):
            return
        for rule in jumps:
            inp.delete_rule(rule)  # stale ports, duplicates, or not first any more
        inp.insert_rule(self._jump(table), 0)
        if jumps:  # someone inserted rules above ours, or the ports changed: say so
            self.log.info("firewall_jump_moved", chain=self.chain, replaced=len(jumps),
                          family="ipv6" if isinstance(table, iptc.Table6) else "ipv4")

    def _scan(self, table: Any) -> dict[str, int]:
        """Ban target -> rule count in our chain, read from the raw entries (fast at 10k)."""
        iptc = _iptc()
        out: dict[str, int] = {}
        if not table.is_chain(self.chain):
            return out
        v6 = isinstance(table, iptc.Table6)
        entry = table.first_rule(self.chain)
        while entry:
            ip = entry.ipv6 if v6 else entry.ip
            addr = bytes(ip.src)
            plen = sum(bin(b).count("1") for b in bytes(ip.smsk))
            key = canonical(f"{ipaddress.ip_address(addr)}/{plen}")
            out[key] = out.get(key, 0) + 1
            entry = table.next_rule(entry)
        return out

    def _delete_all(self, table: Any, ip: str) -> int:
        """Delete every rule for ``ip`` in our chain (no commit); returns how many."""
        iptc = _iptc()
        chain = iptc.Chain(table, self.chain)
        n = 0
        # both actions: rules made before blocker.firewall.action changed must go too
        for reject in (self.reject, not self.reject):
            rule = self._rule(table, ip, reject)
            while True:
                try:
                    chain.delete_rule(rule)
                except iptc.IPTCError:
                    break
                n += 1
        return n

    def _table_for(self, tables: list[Any], ip: str) -> Any:
        iptc = _iptc()
        for t in tables:
            if isinstance(t, iptc.Table6) == is_v6(ip):
                return t
        raise FirewallError(f"cannot ban {ip}: blocker.firewall.ipv6 is false")

    @contextlib.contextmanager
    def _edit(self, what: str, v6_only: bool | None = None,
              all_families: bool = False) -> Iterator[list[Any]]:
        """Locked fresh tables; commits each one after the body; wraps libiptc errors."""
        iptc = _iptc()
        with self._locked():
            try:
                tables = self._tables(v6_only, all_families)
                yield tables
                for t in tables:
                    t.commit()
            except (iptc.IPTCError, iptc.XTablesError, ValueError) as exc:
                raise FirewallError(f"iptables {what} failed: {exc}") from exc

    # -- the interface ------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the chain and the INPUT jump if missing; keeps existing bans."""
        with self._edit("setup") as tables:
            for t in tables:
                self._ensure(t)

    def ban(self, ip: str, timeout: float | None = None) -> None:
        """Add one ban (replacing any rule for the same ip, so never a duplicate)."""
        self.ban_many({ip: timeout})

    def ban_many(self, bans: Mapping[str, float | None]) -> None:
        """Add bans, one commit per address family; existing ones are left as they are."""
        wanted = canonical_bans(bans, self.ipv6)
        if not wanted:
            return
        families = {is_v6(ip) for ip in wanted}
        only = None if len(families) == 2 else families.pop()
        with self._edit("ban", v6_only=only) as tables:
            iptc = _iptc()
            for t in tables:
                if not t.is_chain(self.chain):
                    self._ensure(t)  # someone flushed us: come back
                chain = iptc.Chain(t, self.chain)
                mine = [ip for ip in wanted if is_v6(ip) == isinstance(t, iptc.Table6)]
                if not mine:
                    continue
                # one membership test per ban: a C-level delete for a few, one scan for many
                present = self._scan(t) if len(mine) > 8 else None
                rule = self._rule(t, mine[0])
                for ip in mine:
                    if present is None:
                        self._delete_all(t, ip)
                    elif present.get(ip, 0) == 1:
                        continue
                    elif present.get(ip):
                        self._delete_all(t, ip)
                    rule.src = ip  # reusing one Rule is 2.5x faster than building each
                    chain.append_rule(rule)

    def restore(self, bans: Mapping[str, float | None]) -> None:
        """Set up and load exactly ``bans``: flush our chain and refill it in one commit."""
        wanted = canonical_bans(bans, self.ipv6)
        with self._edit("restore") as tables:
            iptc = _iptc()
            for t in tables:
                self._ensure(t)
                t.flush_entries(self.chain)
                chain = iptc.Chain(t, self.chain)
                rule = None
                for ip in wanted:
                    if is_v6(ip) == isinstance(t, iptc.Table6):
                        if rule is None:
                            rule = self._rule(t, ip)
                        rule.src = ip  # libiptc copies the entry: one Rule serves them all
                        chain.append_rule(rule)

    def unban(self, ip: str) -> bool:
        """Delete every rule for ``ip``; returns whether there was one."""
        key = canonical_bans([ip], True)
        target = next(iter(key))
        if is_v6(target) and not self.ipv6:
            return False
        with self._edit("unban", v6_only=is_v6(target)) as tables:
            t = tables[0]
            return t.is_chain(self.chain) and self._delete_all(t, target) > 0

    def list(self) -> set[str]:
        """Ban targets in our chain(s)."""
        out: set[str] = set()
        with self._edit("list") as tables:
            for t in tables:
                out.update(self._scan(t))
        return out

    def flush(self) -> builtins.list[str]:
        """Delete our INPUT jumps and our chain, IPv4 and IPv6."""
        removed: list[str] = []
        with self._edit("flush", all_families=True) as tables:
            iptc = _iptc()
            for t in tables:
                fam = "ip6tables" if isinstance(t, iptc.Table6) else "iptables"
                inp = iptc.Chain(t, "INPUT")
                for rule in [r for r in inp.rules if self._is_our_jump(r)]:
                    inp.delete_rule(rule)
                    removed.append(f"{fam}: jump INPUT -> {self.chain}")
                if t.is_chain(self.chain):
                    n = sum(self._scan(t).values())
                    t.flush_entries(self.chain)
                    t.delete_chain(self.chain)
                    removed.append(f"{fam}: chain {self.chain} ({n} ban rules)")
        return removed
