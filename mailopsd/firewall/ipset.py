"""The kernel's ipsets over netlink, in-process (Debian's python3-pyroute2), for the iptables
backend.

The iptables backend keeps banned addresses in one ``hash:net`` set per family, matched by one
rule each, so that a ban is one netlink message (O(1), ~0.1 ms) instead of a libiptc rewrite of
the whole table (O(n), ~6.5 ms at 10,000 rules). Members carry no ipset timeout: mailopsd lifts
bans itself, as with per-address rules. Bulk loads and listings go through ``ipset_wire`` (the
bytes written by hand: pyroute2's generic codec costs ~45 us a member).

pyroute2 is imported only when a set is first used, so ``mailopsd --help`` does not pay for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable
from typing import Any

from mailopsd.core.errors import FirewallError
from mailopsd.firewall.ipset_wire import Wire

SET_TYPE = "hash:net"
MAXELEM = 1_048_576  # a botnet's worth; the hash grows on demand, memory follows the members
_IPSET_ERR_EXIST = 4103  # "Element cannot be deleted from the set: it's not added"


def set_names(chain: str) -> tuple[str, str]:
    """The IPv4 and IPv6 set names for an iptables chain (``mailopsd`` -> ``mailopsd-v4``)."""
    return f"{chain}-v4", f"{chain}-v6"


def split(target: str) -> tuple[str, int]:
    """A canonical ban target as (address, prefix length): ``2001:db8::/64`` -> (.., 64)."""
    addr, _, plen = target.partition("/")
    return addr, int(plen) if plen else (128 if ":" in addr else 32)


class Ipsets:
    """One netlink socket to the kernel's ipsets (opened on first use; callers serialise)."""

    def __init__(self) -> None:
        self._sock: Any = None
        self._bulk: Wire | None = None
        self._pid = 0

    def _ipset(self) -> Any:
        """The open socket (a new one after a fork); raises FirewallError if ipset is unusable."""
        if self._sock is not None and self._pid == os.getpid():
            return self._sock
        try:
            from pyroute2.ipset import IPSet
        except ImportError as exc:
            raise FirewallError(
                f"ipset is unusable: python3-pyroute2 is missing ({exc}); install it, or set "
                "blocker.firewall.iptables_set = false (one rule per ban)") from None
        try:
            self._sock = IPSet()
        except Exception as exc:  # pyroute2 raises NetlinkError, OSError or its own kinds
            raise FirewallError(
                f"ipset is unusable: the kernel's ip_set did not answer ({exc}); load the "
                "ip_set module, or set blocker.firewall.iptables_set = false") from None
        self._pid = os.getpid()
        self._bulk = None  # after a fork the parent's bulk socket is not ours either
        return self._sock

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FirewallError:
            self.close()
            raise
        except Exception as exc:
            self.close()  # a socket left mid-conversation would mix up the next answers
            raise FirewallError(f"ipset {what} failed: {_describe(exc)}") from None

    def close(self) -> None:
        """Close the socket (the next call opens a new one)."""
        if self._sock is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # a broken socket may fail to close
                self._sock.close()
            if self._bulk is not None:
                self._bulk.close()
        self._sock = self._bulk = None

    def ensure(self, name: str, v6: bool) -> None:
        """Create ``name`` (hash:net, family inet/inet6, no timeout) unless it exists alike.

        Raises FirewallError if a set of that name exists with another type or family.
        """
        ips = self._ipset()
        family = socket.AF_INET6 if v6 else socket.AF_INET
        try:
            ips.create(name, stype=SET_TYPE, family=family, maxelem=MAXELEM, exclusive=False)
        except Exception as exc:
            self.close()
            if getattr(exc, "code", None) == errno.EEXIST:
                raise FirewallError(
                    f"ipset {name} exists but is not a {SET_TYPE} set of family "
                    f"{'inet6' if v6 else 'inet'} with maxelem {MAXELEM}; remove it "
                    f"(ipset destroy {name}) or choose another blocker.firewall.iptables_chain"
                ) from None
            raise FirewallError(f"ipset create {name} failed: {_describe(exc)}") from None

    def add(self, name: str, targets: Iterable[str]) -> None:
        """Add canonical targets (all of the set's family); members already there stay.

        Sent as hand-made bulk messages (``ipset_wire``): pyroute2's encoder would cost ~45 us
        a member, half a second for 10,000.
        """
        batch = list(targets)
        if batch:
            self._call(f"add to {name}", self._wire().add, name, batch)

    def add_one(self, name: str, target: str) -> None:
        """Add one canonical target (no-op if it is a member already)."""
        addr, plen = split(target)
        ips = self._ipset()
        self._call(f"add {target} to {name}", ips.add, name, f"{addr}/{plen}",
                   family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                   exclusive=False, etype="net")

    def delete(self, name: str, target: str) -> bool:
        """Remove a member; returns whether it was one (a missing set holds nothing)."""
        addr, plen = split(target)
        ips = self._ipset()
        try:
            ips.delete(name, f"{addr}/{plen}", etype="net",
                       family=socket.AF_INET6 if ":" in addr else socket.AF_INET)
        except Exception as exc:
            if getattr(exc, "code", None) in (_IPSET_ERR_EXIST, errno.ENOENT):
                return False
            self.close()
            raise FirewallError(f"ipset del {target} from {name} failed: "
                                f"{_describe(exc)}") from None
        return True

    def members(self, name: str) -> set[str] | None:
        """The canonical targets in set ``name``, or None if there is no such set."""
        held = self._call(f"list {name}", self._wire().list, name)
        return None if held is None else set(held)

    def flush(self, name: str) -> None:
        """Remove every member of ``name``."""
        self._call(f"flush {name}", self._ipset().flush, name)

    def swap(self, a: str, b: str) -> None:
        """Exchange the contents of two sets of the same type, atomically (``ipset swap``)."""
        self._call(f"swap {a} {b}", self._ipset().swap, a, b)

    def destroy(self, name: str) -> int | None:
        """Destroy ``name``; returns how many members it had, None if it did not exist."""
        held = self.members(name)
        if held is None:
            return None
        self._call(f"destroy {name}", self._ipset().destroy, name)
        return len(held)

    def _wire(self) -> Wire:
        """The plain netlink socket for bulk requests, at pyroute2's protocol version."""
        ips = self._ipset()
        if self._bulk is None:
            try:
                self._bulk = Wire(int(ips._proto_version))
            except OSError as exc:
                raise FirewallError(f"ipset is unusable: {exc}") from None
        return self._bulk


def _describe(exc: BaseException) -> str:
    """pyroute2's errors are (code, message) tuples: say them as text."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (code {args[0]})"
    return str(exc) or type(exc).__name__
