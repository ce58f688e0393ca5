"""CompactHits: the ban policy's quiet counters in flat arrays, ~55 B per address.

Under a botnet most addresses are seen once or twice and never again. Kept as Python objects
(a str key, a float or a list per rule, a dict slot each) they cost ~420 B per address; here
an address with at most two hits costs one slot of 34 bytes in six parallel arrays (key as two
64-bit halves, two times, two rule numbers), in 64 open-addressing tables (linear probing)
that grow by half when three quarters full, so growing never copies more than 1/64 of it.

Keys are the address itself as a 128-bit integer (IPv4 as ``::ffff:a.b.c.d``): exact, no
hashing of attacker text into a smaller space, no collisions. Networks (``ipv6_aggregate``)
and busy addresses (three hits or more) stay in the policy's ordinary dicts. The policy moves
an address here when its dicts grow large (``BanPolicy.compact``) and takes it back out
(``take``) the moment it is seen again, so the counting logic only ever works on the dicts.
"""

from __future__ import annotations

import _socket  # socket's C functions: socket.py's enum set-up costs ~1 ms of scan-log's start-up
from array import array

SHARDS = 64
FREE, GONE = 0, 255  # rule-number byte of an empty / a deleted slot (live: rule + 1)
_MULT = 0x9E3779B97F4A7C15
_M64 = 0xFFFFFFFFFFFFFFFF
_MAPPED = bytes(10) + b"\xff\xff"
_V4 = 0xFFFF << 32

Hit = tuple[int, float]  # (rule number, log time)


def ip_key(ip: str) -> int | None:
    """The table key of an address in canonical form: its 128-bit number, IPv4 as the
    IPv4-mapped IPv6 address; None for anything else (networks, odd spellings, and IPv4-mapped
    IPv6 spellings, which would meet the IPv4 keys: those stay in the dicts)."""
    try:
        if ":" in ip:
            packed = _socket.inet_pton(_socket.AF_INET6, ip)
            if packed[:12] == _MAPPED or _socket.inet_ntop(_socket.AF_INET6, packed) != ip:
                return None
            return int.from_bytes(packed, "big")
        packed = _socket.inet_aton(ip)
    except (OSError, ValueError):
        return None
    if _socket.inet_ntoa(packed) != ip:
        return None
    return _V4 | int.from_bytes(packed, "big")


class _Table:
    """One shard: parallel arrays, linear probing, lazy deletion (see the module docstring).
    ``hi`` holds the upper 64 bits of the keys (0 for IPv4)."""

    __slots__ = ("cap", "gone", "hi", "keys", "n", "r1", "r2", "t1", "t2")

    def __init__(self, cap: int = 16) -> None:
        self._reset(cap)

    def _reset(self, cap: int) -> None:
        self.cap = cap
        self.keys = array("Q", bytes(8 * cap))
        self.hi = array("Q", bytes(8 * cap))
        self.t1 = array("d", bytes(8 * cap))
        self.t2 = array("d", bytes(8 * cap))
        self.r1 = array("B", bytes(cap))  # FREE, GONE, or rule number + 1
        self.r2 = array("B", bytes(cap))  # 0: no second hit
        self.n = 0
        self.gone = 0

    def find(self, k: int) -> int:
        """Slot of key ``k``, or -1."""
        lo, hi, keys, his, r1, cap = k & _M64, k >> 64, self.keys, self.hi, self.r1, self.cap
        i = ((lo * _MULT ^ hi) & _M64) % cap
        while True:
            r = r1[i]
            if r == FREE:
                return -1
            if r != GONE and keys[i] == lo and his[i] == hi:
                return i
            i += 1
            if i == cap:
                i = 0

    def put(self, k: int, hits: list[Hit]) -> None:
        """Store ``k`` (not present) with one or two hits."""
        if (self.n + self.gone + 1) * 4 > self.cap * 3:
            self._rebuild(max(16, self.n * 2 if self.n * 2 > self.cap else self.cap))
        lo, hi, r1, cap = k & _M64, k >> 64, self.r1, self.cap
        i = ((lo * _MULT ^ hi) & _M64) % cap
        while r1[i] != FREE and r1[i] != GONE:
            i += 1
            if i == cap:
                i = 0
        if r1[i] == GONE:
            self.gone -= 1
        self.keys[i], self.hi[i] = lo, hi
        r1[i], self.t1[i] = hits[0][0] + 1, hits[0][1]
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
        self.r1[i] = GONE
        self.n -= 1
        self.gone += 1

    def _rebuild(self, cap: int) -> None:
        """Re-insert every live slot into arrays of ``cap`` slots (also clears deletions)."""
        keys, his, t1, t2, r1, r2, n = (self.keys, self.hi, self.t1, self.t2, self.r1, self.r2,
                                        self.cap)
        self._reset(cap)
        for i in range(n):
            if r1[i] not in (FREE, GONE):
                hits = [(r1[i] - 1, t1[i])] + ([(r2[i] - 1, t2[i])] if r2[i] else [])
                self.put(his[i] << 64 | keys[i], hits)

    def prune(self, horizon: list[float]) -> int:
        """Drop hits at or before their rule's horizon; returns addresses dropped."""
        dropped = 0
        t1, t2, r1, r2 = self.t1, self.t2, self.r1, self.r2
        for i in range(self.cap):
            r = r1[i]
            if r in (FREE, GONE):
                continue
            keep2 = r2[i] and t2[i] > horizon[r2[i] - 1]
            if t1[i] > horizon[r - 1]:
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
    """One- and two-hit counters, by rule number; see the module docstring."""

    def __init__(self) -> None:
        self._tables = [_Table() for _ in range(SHARDS)]
        self.n = 0

    def put(self, k: int, hits: list[Hit]) -> None:
        """Store key ``k`` (from ip_key, not present yet) with one or two (rule, time) hits."""
        self._tables[(k ^ k >> 64) % SHARDS].put(k, hits)
        self.n += 1

    def take(self, k: int) -> list[Hit] | None:
        """Remove ``k`` and return its hits (None if absent)."""
        t = self._tables[(k ^ k >> 64) % SHARDS]
        i = t.find(k)
        if i < 0:
            return None
        hits = t.hits(i)
        t.delete(i)
        self.n -= 1
        return hits

    def peek(self, k: int) -> list[Hit] | None:
        """``k``'s hits without removing them (None if absent)."""
        t = self._tables[(k ^ k >> 64) % SHARDS]
        i = t.find(k)
        return None if i < 0 else t.hits(i)

    def prune(self, horizon: list[float]) -> int:
        """Drop hits at or before ``horizon[rule number]``; returns addresses dropped."""
        dropped = sum(t.prune(horizon) for t in self._tables)
        self.n -= dropped
        return dropped

    def nbytes(self) -> int:
        """Bytes held by the arrays (for the benchmark)."""
        return sum(t.cap * 34 for t in self._tables)
