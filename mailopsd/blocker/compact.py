"""CompactHits: the ban policy's quiet IPv4 counters in flat arrays, ~40 B per address.

Under a botnet most addresses are seen once or twice and never again. Kept as Python objects
(a str key, a float or a list per rule, a dict slot each) they cost ~420 B per address; here
an address with at most two hits costs one slot of 26 bytes in five parallel arrays (key, two
times, two rule numbers), in 64 open-addressing tables (linear probing) that grow by half
when three quarters full, so that growing never copies more than 1/64 of the whole.

Keys are the IPv4 address as an integer + 1 (0 = empty slot, 2**64-1 = deleted slot): exact,
no hashing of attacker text, no collisions. IPv6 addresses and busy addresses (three hits or
more) stay in the policy's ordinary dicts. The policy moves an address here when its dicts
grow large (``BanPolicy._compact_young``) and takes it back out (``take``) the moment it is
seen again, so the counting logic itself only ever works on the dicts.
"""

from __future__ import annotations

import socket
from array import array

SHARDS = 64
EMPTY = 0
GONE = 0xFFFFFFFFFFFFFFFF
_MULT = 0x9E3779B97F4A7C15
_M64 = 0xFFFFFFFFFFFFFFFF

Hit = tuple[int, float]  # (rule number, log time)


def v4key(ip: str) -> int | None:
    """The table key of a dotted-quad IPv4 address in canonical form; None for anything else
    (IPv6, networks, odd spellings: those stay in the dicts)."""
    try:
        packed = socket.inet_aton(ip)
    except OSError:
        return None
    if socket.inet_ntoa(packed) != ip:
        return None
    return int.from_bytes(packed, "big") + 1


class _Table:
    """One shard: parallel arrays, linear probing, lazy deletion."""

    __slots__ = ("cap", "gone", "keys", "n", "r1", "r2", "t1", "t2")

    def __init__(self, cap: int = 16) -> None:
        self._reset(cap)

    def _reset(self, cap: int) -> None:
        self.cap = cap
        self.keys = array("Q", bytes(8 * cap))
        self.t1 = array("d", bytes(8 * cap))
        self.t2 = array("d", bytes(8 * cap))
        self.r1 = array("B", bytes(cap))  # rule number + 1 (0 = no hit)
        self.r2 = array("B", bytes(cap))
        self.n = 0
        self.gone = 0

    def find(self, k: int) -> int:
        """Slot of key ``k``, or -1."""
        keys, cap = self.keys, self.cap
        i = ((k * _MULT) & _M64) % cap
        while True:
            got = keys[i]
            if got == k:
                return i
            if got == EMPTY:
                return -1
            i += 1
            if i == cap:
                i = 0

    def put(self, k: int, hits: list[Hit]) -> None:
        """Store ``k`` (not present) with one or two hits."""
        if (self.n + self.gone + 1) * 4 > self.cap * 3:
            self._rebuild(max(16, self.n * 2 if self.n * 2 > self.cap else self.cap))
        keys, cap = self.keys, self.cap
        i = ((k * _MULT) & _M64) % cap
        while keys[i] != EMPTY and keys[i] != GONE:
            i += 1
            if i == cap:
                i = 0
        if keys[i] == GONE:
            self.gone -= 1
        keys[i] = k
        self.r1[i], self.t1[i] = hits[0][0] + 1, hits[0][1]
        if len(hits) > 1:
            self.r2[i], self.t2[i] = hits[1][0] + 1, hits[1][1]
        else:
            self.r2[i], self.t2[i] = 0, 0.0
        self.n += 1

    def hits(self, i: int) -> list[Hit]:
        out = [(self.r1[i] - 1, self.t1[i])]
        if self.r2[i]:
            out.append((self.r2[i] - 1, self.t2[i]))
        return out

    def delete(self, i: int) -> None:
        self.keys[i] = GONE
        self.n -= 1
        self.gone += 1

    def _rebuild(self, cap: int) -> None:
        """Re-insert every live slot into arrays of ``cap`` slots (also clears deletions)."""
        old = (self.keys, self.t1, self.t2, self.r1, self.r2, self.cap)
        self._reset(cap)
        keys, t1, t2, r1, r2, n = old
        for i in range(n):
            k = keys[i]
            if k != EMPTY and k != GONE:
                hits = [(r1[i] - 1, t1[i])] + ([(r2[i] - 1, t2[i])] if r2[i] else [])
                self.put(k, hits)

    def prune(self, horizon: list[float]) -> int:
        """Drop hits at or before their rule's horizon; returns addresses dropped."""
        dropped = 0
        keys, t1, t2, r1, r2 = self.keys, self.t1, self.t2, self.r1, self.r2
        for i in range(self.cap):
            k = keys[i]
            if k in (EMPTY, GONE):
                continue
            keep2 = r2[i] and t2[i] > horizon[r2[i] - 1]
            if t1[i] > horizon[r1[i] - 1]:
                if not keep2:
                    r2[i], t2[i] = 0, 0.0
                continue
            if keep2:
                r1[i], t1[i], r2[i], t2[i] = r2[i], t2[i], 0, 0.0
                continue
            self.delete(i)
            dropped += 1
        if self.gone * 4 > self.cap:
            self._rebuild(max(16, self.n * 2))
        return dropped


class CompactHits:
    """One- and two-hit IPv4 counters, by rule number; see the module docstring."""

    def __init__(self) -> None:
        self._tables = [_Table() for _ in range(SHARDS)]
        self.n = 0

    def put(self, k: int, hits: list[Hit]) -> None:
        """Store key ``k`` (from v4key, not present yet) with one or two (rule, time) hits."""
        self._tables[k % SHARDS].put(k, hits)
        self.n += 1

    def take(self, k: int) -> list[Hit] | None:
        """Remove ``k`` and return its hits (None if absent)."""
        t = self._tables[k % SHARDS]
        i = t.find(k)
        if i < 0:
            return None
        hits = t.hits(i)
        t.delete(i)
        self.n -= 1
        return hits

    def peek(self, k: int) -> list[Hit] | None:
        """``k``'s hits without removing them (None if absent)."""
        t = self._tables[k % SHARDS]
        i = t.find(k)
        return None if i < 0 else t.hits(i)

    def prune(self, horizon: list[float]) -> int:
        """Drop hits at or before ``horizon[rule number]``; returns addresses dropped."""
        dropped = sum(t.prune(horizon) for t in self._tables)
        self.n -= dropped
        return dropped

    def nbytes(self) -> int:
        """Bytes held by the arrays (for the benchmark)."""
        return sum(t.cap * 26 for t in self._tables)
