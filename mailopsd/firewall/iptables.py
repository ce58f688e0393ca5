"""python-iptables backend: a chain of our own in the LEGACY x_tables, bans in an ipset per family.

Layout with ``blocker.firewall.iptables_set = true`` (the default)::

    # iptables-legacy -S                      (ip6tables-legacy -S: the same with mailopsd-v6)
    -N mailopsd
    -A INPUT -p tcp -m multiport --dports 25,465 -j mailopsd
    -A mailopsd -p tcp -m set --match-set mailopsd-v4 src -j DROP
    # ipset list mailopsd-v4
    Type: hash:net ... Members: 192.0.2.7  2001:db8::/64 goes to mailopsd-v6

A ban or unban is then one netlink message to the set (``ipset.py``, ~0.1 ms, whatever the number
of bans); the rules change only at set-up and restore. With ``iptables_set = false`` each ban is
its own rule, ``-A mailopsd -s 192.0.2.7/32 -p tcp -j DROP``, and since libiptc replaces a whole
table per commit, each ban costs O(number of bans) (~6.5 ms at 10,000).

Every rule change runs as refresh (read the table) -> edit -> one commit, under a process-wide
lock and the ``/run/xtables.lock`` flock that ``iptables-legacy`` itself takes, so a concurrent
``mailopsd bans`` or admin command never loses our change or theirs. Per-address rules found in
the chain in set mode (an admin's, or an older mailopsd's) count as bans until the next restore.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from mailopsd.core.config.schema_firewall import FirewallConfig
from mailopsd.core.errors import FirewallError
from mailopsd.core.logs import get_logger
from mailopsd.firewall import xtables as xt
from mailopsd.firewall.base import FirewallBackend, canonical_bans, is_v6
from mailopsd.firewall.ipset import Ipsets, set_names

XTABLES_LOCK = xt.XTABLES_LOCK


class IptablesBackend(FirewallBackend):
    """Bans as ipset members matched by one rule per family (or one rule per ban)."""

    name = "iptables"

    def __init__(self, config: FirewallConfig, lock_path: str = XTABLES_LOCK) -> None:
        self.chain = config.iptables_chain
        self.ports = tuple(config.ports)
        self.reject = config.action == "reject"
        self.ipv6 = config.ipv6
        self.use_set = config.iptables_set
        self.sets = set_names(self.chain)
        self.temp_sets = (f"{self.chain}-n4", f"{self.chain}-n6")  # restore's, swapped in
        self.log = get_logger("firewall")
        self.lock = xt.XtablesLock(lock_path, float(config.timeout), self.log)
        self.ipsets = Ipsets()

    # -- tables -------------------------------------------------------------------------------
    def _tables(self, v6_only: bool | None = None, all_families: bool = False) -> list[Any]:
        """The filter tables to work on, refreshed (fresh snapshot, autocommit off)."""
        iptc = xt.iptc()
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

    @contextlib.contextmanager
    def _edit(self, what: str, v6_only: bool | None = None, all_families: bool = False,
              commit: bool = True) -> Iterator[list[Any]]:
        """Locked fresh tables; commits each one after the body; wraps libiptc errors."""
        iptc = xt.iptc()
        with self.lock.held():
            try:
                tables = self._tables(v6_only, all_families)
                yield tables
                if commit:
                    for t in tables:
                        t.commit()
            except (iptc.IPTCError, iptc.XTablesError, ValueError) as exc:
                raise FirewallError(f"iptables {what} failed: {exc}") from exc

    def _set_of(self, table: Any) -> str:
        return self.sets[1] if xt.is_v6_table(table) else self.sets[0]

    def _ensure(self, table: Any) -> None:
        """Chain, one correct jump at the top of INPUT, and (set mode) the set and its rule.

        No commit: the caller's ``_edit`` commits. The set is created first (the kernel refuses
        a rule naming a set that does not exist).
        """
        iptc = xt.iptc()
        if not table.is_chain(self.chain):
            table.create_chain(self.chain)
        inp = iptc.Chain(table, "INPUT")
        jumps = [r for r in inp.rules if xt.is_jump_to(r, self.chain)]
        first = inp.rules[0] if inp.rules else None
        if not (len(jumps) == 1 and xt.jump_matches(jumps[0], self.ports) and first is not None
                and xt.is_jump_to(first, self.chain)):
            for rule in jumps:
                inp.delete_rule(rule)  # stale ports, duplicates, or not first any more
            inp.insert_rule(xt.jump_rule(table, self.chain, self.ports), 0)
            if jumps:  # someone inserted rules above ours, or the ports changed: say so
                self.log.info("firewall_jump_moved", chain=self.chain, replaced=len(jumps),
                              family="ipv6" if xt.is_v6_table(table) else "ipv4")
        if self.use_set:
            self._ensure_set_rule(table)

    def _ensure_set_rule(self, table: Any) -> None:
        """Exactly one set rule in our chain, for this family's set and the action in force."""
        iptc = xt.iptc()
        name = self._set_of(table)
        self.ipsets.ensure(name, xt.is_v6_table(table))
        rules = xt.set_rules(table, self.chain)
        if len(rules) == 1 and xt.is_set_rule(rules[0], name, self.reject):
            return
        chain = iptc.Chain(table, self.chain)
        for rule in rules:
            chain.delete_rule(rule)  # the other action, another set, or duplicates
        chain.insert_rule(xt.set_rule(table, name, self.reject), 0)

    def _delete_all(self, table: Any, ip: str) -> int:
        """Delete every per-address rule for ``ip`` in our chain (no commit); returns how many."""
        iptc = xt.iptc()
        chain = iptc.Chain(table, self.chain)
        n = 0
        # both actions: rules made before blocker.firewall.action changed must go too
        for reject in (self.reject, not self.reject):
            rule = xt.address_rule(table, ip, reject)
            while True:
                try:
                    chain.delete_rule(rule)
                except iptc.IPTCError:
                    break
                n += 1
        return n

    # -- the interface ------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the chain, the INPUT jump, and the sets with their rules, if missing."""
        with self._edit("setup") as tables:
            for t in tables:
                self._ensure(t)

    def ban(self, ip: str, timeout: float | None = None) -> None:
        """Add one ban (never a duplicate: a set member, or a rule replacing any for ``ip``)."""
        self.ban_many({ip: timeout})

    def ban_many(self, bans: Mapping[str, float | None]) -> None:
        """Add bans: one netlink message per family (set), or one commit per family (rules)."""
        wanted = canonical_bans(bans, self.ipv6)
        if not wanted:
            return
        if self.use_set:
            self._set_ban(list(wanted))
            return
        families = {is_v6(ip) for ip in wanted}
        only = None if len(families) == 2 else families.pop()
        with self._edit("ban", v6_only=only) as tables:
            iptc = xt.iptc()
            for t in tables:
                if not t.is_chain(self.chain):
                    self._ensure(t)  # someone flushed us: come back
                chain = iptc.Chain(t, self.chain)
                mine = [ip for ip in wanted if is_v6(ip) == xt.is_v6_table(t)]
                if not mine:
                    continue
                # one membership test per ban: a C-level delete for a few, one scan for many
                present = xt.scan_addresses(t, self.chain) if len(mine) > 8 else None
                rule = xt.address_rule(t, mine[0], self.reject)
                for ip in mine:
                    if present is None:
                        self._delete_all(t, ip)
                    elif present.get(ip, 0) == 1:
                        continue
                    elif present.get(ip):
                        self._delete_all(t, ip)
                    rule.src = ip  # reusing one Rule is 2.5x faster than building each
                    chain.append_rule(rule)

    def _set_ban(self, targets: builtins.list[str]) -> None:
        """Add set members; if a set is gone (flushed and destroyed), set up and try again."""
        for attempt in (1, 2):
            try:
                with xt.PROCESS_LOCK:
                    for v6, name in ((False, self.sets[0]), (True, self.sets[1])):
                        mine = [ip for ip in targets if is_v6(ip) == v6]
                        if len(mine) == 1:
                            self.ipsets.add_one(name, mine[0])
                        elif mine:
                            self.ipsets.add(name, mine)
                return
            except FirewallError:
                if attempt == 2:
                    raise
                self.setup()  # raises FirewallError itself when ipset is unusable

    def restore(self, bans: Mapping[str, float | None]) -> None:
        """Set up and load exactly ``bans``, leaving no moment without them.

        Set mode: each family's bans go into a fresh set that is then swapped with the live one
        (``ipset swap``, atomic), and one commit per family leaves just the jump and the set rule
        in our chain. Rule mode: our chain is flushed and refilled in one commit per family.
        """
        wanted = canonical_bans(bans, self.ipv6)
        with self._edit("restore") as tables:
            iptc = xt.iptc()
            for t in tables:
                self._ensure(t)
                t.flush_entries(self.chain)
                if self.use_set:
                    v6 = xt.is_v6_table(t)
                    self._fill_set(v6, [ip for ip in wanted if is_v6(ip) == v6])
                    iptc.Chain(t, self.chain).append_rule(
                        xt.set_rule(t, self._set_of(t), self.reject))
                    continue
                chain = iptc.Chain(t, self.chain)
                rule = None
                for ip in wanted:
                    if is_v6(ip) == xt.is_v6_table(t):
                        if rule is None:
                            rule = xt.address_rule(t, ip, self.reject)
                        rule.src = ip  # libiptc copies the entry: one Rule serves them all
                        chain.append_rule(rule)

    def _fill_set(self, v6: bool, targets: builtins.list[str]) -> None:
        """Make a family's live set hold exactly ``targets`` in one swap."""
        live, temp = self.sets[v6], self.temp_sets[v6]
        self.ipsets.ensure(temp, v6)
        self.ipsets.flush(temp)  # a temp set left by a crash mid-restore
        self.ipsets.add(temp, targets)
        self.ipsets.swap(temp, live)
        self.ipsets.destroy(temp)

    def unban(self, ip: str) -> bool:
        """Remove ``ip`` from the set and delete any rule for it; returns whether it was banned."""
        key = canonical_bans([ip], True)
        target = next(iter(key))
        v6 = is_v6(target)
        if v6 and not self.ipv6:
            return False
        if not self.use_set:
            with self._edit("unban", v6_only=v6) as tables:
                t = tables[0]
                return t.is_chain(self.chain) and self._delete_all(t, target) > 0
        with xt.PROCESS_LOCK:
            found = self.ipsets.delete(self.sets[v6], target)
        # an address rule for it (an admin's, or an older mailopsd's) goes too; the table is
        # committed only when there was one, so an unban never rewrites it otherwise
        with self._edit("unban", v6_only=v6, commit=False) as tables:
            t = tables[0]
            if xt.scan_addresses(t, self.chain).get(target):
                found = self._delete_all(t, target) > 0 or found
                t.commit()
        return found

    def list(self) -> set[str]:
        """Ban targets the kernel enforces: address rules in our chain, and our sets' members
        while our chain holds the rule matching the set (members nothing matches block nothing,
        so after an ``iptables-legacy -F`` they count as missing and the daemon restores)."""
        out: set[str] = set()
        with self._edit("list", commit=False) as tables:
            for t in tables:
                out.update(xt.scan_addresses(t, self.chain))
                name = self._set_of(t)
                if self.use_set and any(xt.set_rule_of(r) == name
                                        for r in xt.set_rules(t, self.chain)):
                    out.update(self.ipsets.members(name) or ())
        return out

    def flush(self) -> builtins.list[str]:
        """Delete our INPUT jumps and our chain, IPv4 and IPv6, then destroy our sets."""
        removed: builtins.list[str] = []
        with self._edit("flush", all_families=True) as tables:
            iptc = xt.iptc()
            for t in tables:
                fam = "ip6tables" if xt.is_v6_table(t) else "iptables"
                inp = iptc.Chain(t, "INPUT")
                for rule in [r for r in inp.rules if xt.is_jump_to(r, self.chain)]:
                    inp.delete_rule(rule)
                    removed.append(f"{fam}: jump INPUT -> {self.chain}")
                if t.is_chain(self.chain):
                    n = sum(xt.scan_addresses(t, self.chain).values())
                    # the set layout's bans are the set's members (counted below, per set)
                    sets = sorted({str(xt.set_rule_of(r)) for r in xt.set_rules(t, self.chain)})
                    via = "".join(f", the rule matching set {x}" for x in sets)
                    t.flush_entries(self.chain)
                    t.delete_chain(self.chain)
                    removed.append(f"{fam}: chain {self.chain} ({n} ban rules{via})")
        removed += self._destroy_sets()
        return removed

    def _destroy_sets(self) -> builtins.list[str]:
        """Destroy our sets (unreferenced now that the chain is gone); what went.

        Without pyroute2 or the kernel's ip_set no set of ours can exist either: that is said
        in the list rather than raised, so the chain and jumps already removed are reported.
        """
        removed: builtins.list[str] = []
        with xt.PROCESS_LOCK:
            try:
                for name in (*self.sets, *self.temp_sets):
                    n = self.ipsets.destroy(name)
                    if n is not None:
                        removed.append(f"ipset: set {name} ({n} bans)")
            except FirewallError as exc:
                removed.append(f"ipset: skipped ({exc})")
        return removed
