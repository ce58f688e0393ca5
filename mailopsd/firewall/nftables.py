"""nftables backend: a table of our own whose sets hold the bans, each element with its timeout.

Layout (``nft list table inet mailopsd``)::

    table inet mailopsd {
        set addr4 { type ipv4_addr; flags timeout; }             # single addresses
        set net4  { type ipv4_addr; flags interval,timeout; }    # networks (CIDR)
        set addr6 / net6 likewise for IPv6
        chain input { type filter hook input priority filter - 10; policy accept;
            tcp dport { 25, 465 } ip saddr @addr4 drop ... }
    }

Elements carry their remaining ban time, so bans expire in the kernel even while the daemon is
down; the per-packet and per-ban costs stay flat with the number of bans. Every change is one
``nft -f -`` transaction, built as text by the pure functions below.
"""

from __future__ import annotations

import builtins
import json
import math
import threading
from collections.abc import Iterable, Mapping

from mailopsd.core.config.schema_firewall import FirewallConfig
from mailopsd.core.errors import FirewallError, ProcessError
from mailopsd.firewall.base import FirewallBackend, canonical, canonical_bans, is_v6

SETS = {("4", False): "addr4", ("4", True): "net4", ("6", False): "addr6", ("6", True): "net6"}


def set_for(ip: str) -> str:
    """The set a canonical ban target belongs in."""
    return SETS[("6" if is_v6(ip) else "4", "/" in ip)]


def element(ip: str, timeout: float | None) -> str:
    """One set element: the target, with ``timeout Ns`` (rounded up, at least 1 s) if finite."""
    if timeout is None:
        return ip
    return f"{ip} timeout {max(1, math.ceil(timeout))}s"


def setup_script(table: str, ports: Iterable[int], action: str, ipv6: bool) -> str:
    """Commands that create the table, sets and hook chain and (re)write its rules.

    Idempotent: ``add`` leaves existing sets (and their elements) alone; only the chain's rules
    are flushed and written again, so port or action changes take effect.
    """
    verdict = "reject with tcp reset" if action == "reject" else "drop"
    dports = ", ".join(str(p) for p in ports)
    lines = [f"add table inet {table}"]
    fams = ("4", "6") if ipv6 else ("4",)
    for fam in fams:
        for net in (False, True):
            flags = "interval, timeout" if net else "timeout"
            lines.append(f"add set inet {table} {SETS[(fam, net)]} "
                         f"{{ type ipv{fam}_addr; flags {flags}; }}")
    lines.append(f"add chain inet {table} input "
                 "{ type filter hook input priority filter - 10; policy accept; }")
    lines.append(f"flush chain inet {table} input")
    for fam in fams:
        proto = "ip6" if fam == "6" else "ip"
        for net in (False, True):
            lines.append(f"add rule inet {table} input tcp dport {{ {dports} }} "
                         f"{proto} saddr @{SETS[(fam, net)]} {verdict}")
    return "\n".join(lines) + "\n"


def _by_set(bans: Mapping[str, float | None]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ip, timeout in bans.items():
        if timeout is not None and timeout <= 0:
            continue  # already expired: the kernel would refuse a zero timeout anyway
        out.setdefault(set_for(ip), []).append(element(ip, timeout))
    return out


def create_script(table: str, bans: Mapping[str, float | None]) -> str:
    """Add new elements; the transaction fails ("File exists") if one is already there.

    The fast path: a plain add costs a few ms, while deleting an element (to change its
    timeout) makes the kernel wait for an RCU grace period (~15 ms more).
    """
    return "".join(f"create element inet {table} {name} {{ {', '.join(elems)} }}\n"
                   for name, elems in _by_set(bans).items())


def ban_script(table: str, bans: Mapping[str, float | None]) -> str:
    """Add bans, replacing an existing element's timeout: add (no-op if present), delete, add."""
    lines = []
    for name, elems in _by_set(bans).items():
        bare = ", ".join(e.split(" ", 1)[0] for e in elems)
        lines.append(f"add element inet {table} {name} {{ {bare} }}")
        lines.append(f"delete element inet {table} {name} {{ {bare} }}")
        lines.append(f"add element inet {table} {name} {{ {', '.join(elems)} }}")
    return "\n".join(lines) + ("\n" if lines else "")


def restore_script(table: str, ports: Iterable[int], action: str, ipv6: bool,
                   bans: Mapping[str, float | None]) -> str:
    """Set up, empty every set, and load ``bans``: one transaction."""
    lines = [setup_script(table, ports, action, ipv6).rstrip("\n")]
    for (fam, _net), name in SETS.items():
        if fam == "4" or ipv6:
            lines.append(f"flush set inet {table} {name}")
    for name, elems in _by_set(bans).items():
        lines.append(f"add element inet {table} {name} {{ {', '.join(elems)} }}")
    return "\n".join(lines) + "\n"


def unban_script(table: str, ips: Iterable[str]) -> str:
    """Delete elements (the transaction fails if one is not there)."""
    return "".join(f"delete element inet {table} {name} {{ {', '.join(elems)} }}\n"
                   for name, elems in _by_set({ip: None for ip in ips}).items())


def flush_script(table: str) -> str:
    """Delete our table, whether or not it exists (add first, then delete)."""
    return f"add table inet {table}\ndelete table inet {table}\n"


def parse_listing(text: str) -> dict[str, float | None]:
    """Ban target -> seconds left (None = permanent) from ``nft -j list table``.

    Raises FirewallError if the text is not nft's JSON.
    """
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FirewallError(f"unexpected output from nft -j: {exc}") from None
    out: dict[str, float | None] = {}
    for item in items:
        s = item.get("set") if isinstance(item, dict) else None
        if not s or s.get("name") not in SETS.values():
            continue
        for elem in s.get("elem", []):
            left: float | None = None
            if isinstance(elem, dict) and "elem" in elem:
                left = elem["elem"].get("expires")
                elem = elem["elem"]["val"]
            if isinstance(elem, dict) and "prefix" in elem:
                elem = f"{elem['prefix']['addr']}/{elem['prefix']['len']}"
            if isinstance(elem, str):
                out[canonical(elem)] = None if left is None else float(left)
    return out


class NftablesBackend(FirewallBackend):
    """Bans as timed elements of nftables sets in table ``inet <nftables_table>``."""

    name = "nftables"

    def __init__(self, config: FirewallConfig, nft: str = "/usr/sbin/nft") -> None:
        self.table = config.nftables_table
        self.ports = tuple(config.ports)
        self.action = config.action
        self.ipv6 = config.ipv6
        self.timeout = float(config.timeout)
        self.nft = nft
        self._lock = threading.Lock()  # keeps our own transactions in order
        from mailopsd.firewall import libnft

        self._lib = libnft.load(nft)  # in-process when the stock nft is configured (issue 12)

    def _run(self, script: str, what: str, *args: str, missing_ok: bool = False,
             tolerate: tuple[str, ...] = ("No such file or directory",)) -> str | None:
        """Run ``nft -f -`` with ``script`` (or ``nft ARGS``); returns stdout.

        With ``missing_ok``, an error containing one of ``tolerate`` (by default: our table is
        absent) returns None. Raises FirewallError.
        """
        from mailopsd.core.process import run

        if self._lib is not None:
            from mailopsd.firewall import libnft

            with self._lock:
                rc, out, err = libnft.run(self._lib, script, args)
        else:
            argv = (self.nft, *args) if args else (self.nft, "-f", "-")
            try:
                with self._lock:
                    result = run(argv, timeout=self.timeout,
                                 ok_codes=(0, 1) if missing_ok else (0,),
                                 input=None if args else script.encode())
            except ProcessError as exc:
                detail = (exc.stderr or str(exc)).strip().splitlines()
                raise FirewallError(f"nft {what} failed: {detail[0] if detail else exc}") from exc
            rc, out, err = result.returncode, result.stdout, result.stderr
        if rc != 0:
            if missing_ok and any(t in err for t in tolerate):
                return None
            detail = err.strip().splitlines()
            raise FirewallError(f"nft {what} failed: {detail[0] if detail else 'exit 1'}")
        return out

    def setup(self) -> None:
        """Create table, sets and chain; rewrite the chain's rules (sets are kept)."""
        self._run(setup_script(self.table, self.ports, self.action, self.ipv6), "setup")

    def ban(self, ip: str, timeout: float | None = None) -> None:
        """Add one element (its timeout replaced if it was there)."""
        self.ban_many({ip: timeout})

    def ban_many(self, bans: Mapping[str, float | None]) -> None:
        """Add elements in one transaction."""
        wanted = canonical_bans(bans, self.ipv6)
        if not wanted:
            return
        # new elements (the usual case) in one cheap transaction; if one exists, replace
        # timeouts with add-delete-add; if our table is gone (flushed), set up again first
        fast = self._run(create_script(self.table, wanted), "ban", missing_ok=True,
                         tolerate=("File exists", "No such file or directory"))
        if fast is not None:
            return
        if self._run(ban_script(self.table, wanted), "ban", missing_ok=True) is None:
            self.setup()
            self._run(ban_script(self.table, wanted), "ban")

    def restore(self, bans: Mapping[str, float | None]) -> None:
        """Set up and load exactly ``bans`` in one transaction."""
        wanted = canonical_bans(bans, self.ipv6)
        self._run(restore_script(self.table, self.ports, self.action, self.ipv6, wanted),
                  "restore")

    def unban(self, ip: str) -> bool:
        """Remove one element; returns whether it was there."""
        target = canonical(ip)
        if is_v6(target) and not self.ipv6:
            return False
        # not there (expired in the kernel already, or our table is gone) is not an error
        out = self._run(unban_script(self.table, [target]), "unban", missing_ok=True,
                        tolerate=("No such file or directory", "element does not exist"))
        return out is not None

    def list_timeouts(self) -> dict[str, float | None]:
        """Ban target -> seconds left in the kernel (None = permanent)."""
        text = self._run("", "list", "-j", "list", "table", "inet", self.table, missing_ok=True)
        return {} if text is None else parse_listing(text)

    def list(self) -> set[str]:
        """Ban targets now in the sets (expired elements are already gone)."""
        return set(self.list_timeouts())

    def flush(self) -> builtins.list[str]:
        """Delete our whole table (chain, sets, bans)."""
        n = len(self.list_timeouts())
        exists = n > 0 or self._table_exists()
        self._run(flush_script(self.table), "flush")
        return [f"nftables: table inet {self.table} ({n} bans)"] if exists else []

    def _table_exists(self) -> bool:
        out = self._run("", "list", "list", "tables", "inet") or ""
        return f"table inet {self.table}" in out.splitlines()
