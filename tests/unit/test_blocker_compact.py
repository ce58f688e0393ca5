"""The policy's compact arrays (quiet IPv4 counters) decide exactly like the plain dicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailopsd.blocker import policy as policy_mod
from mailopsd.blocker.compact import CompactHits, ip_key
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.core.config import parse_config

RULES = ("no-rdns", "auth-failed", "relay-denied")
CFG = parse_config({"blocker": {"ignore_self": False, "rules": {
    "no-rdns": {"maxretry": 3, "findtime": "10m"},
    "auth-failed": {"maxretry": 2, "findtime": "5m"},
    "relay-denied": {"maxretry": 4, "findtime": "1h"}}}}).blocker


def test_keys_are_exact_and_only_for_canonical_addresses() -> None:
    assert ip_key("0.0.0.0") == 0xFFFF << 32 and ip_key("255.255.255.255") == 2**48 - 1
    assert ip_key("::") == 0 and ip_key("2001:db8::1") == 0x20010db8 << 96 | 1
    for odd in ("2001:DB8::1", "2001:db8:0::1", "192.0.2.0/24", "2001:db8::/64", "01.2.3.4",
                "1.2.3", "1.2.3.4 ", "x", "::ffff:1.2.3.4", "::ffff:102:304"):
        assert ip_key(odd) is None


def test_table_put_take_peek_prune_and_growth() -> None:
    def key(i: int) -> int:
        return i + 1 if i % 3 else (i + 1) | 0x20010db8 << 96  # IPv6 keys too

    c = CompactHits()
    for i in range(5000):
        c.put(key(i), [(0, float(i))] if i % 2 else [(1, float(i)), (2, float(i) + 0.5)])
    assert c.n == 5000
    assert c.peek(key(0)) == [(1, 0.0), (2, 0.5)] and c.take(key(0)) == [(1, 0.0), (2, 0.5)]
    assert c.take(key(0)) is None and c.peek(1) is None and c.n == 4999
    # rule 0 keeps hits after 4000, rule 1 after 4500.7, rule 2 after 4500.2
    dropped = c.prune([4000.0, 4500.7, 4500.2])
    assert c.n == 4999 - dropped
    assert c.peek(key(4001)) == [(0, 4001.0)] and c.peek(key(4000)) is None
    assert c.peek(key(4500)) == [(2, 4500.5)]  # its first hit left the window, not its second
    assert c.peek(key(4502)) == [(1, 4502.0), (2, 4502.5)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(RULES), st.integers(0, 3000)),
                max_size=400),
       st.sampled_from([2, 8, 64]))
def test_compaction_never_changes_a_decision(events: list[tuple[int, str, int]],
                                             compact_at: int) -> None:
    plain = BanPolicy(CFG, IgnoreList(()))
    small = BanPolicy(CFG, IgnoreList(()))
    small._compact_at = compact_at
    when = 1_800_000_000.0
    for n, rule, step in events:
        when += step / 10
        ip = f"192.0.2.{n}" if n < 30 else f"2001:db8::{n}" if n < 36 else f"2001:db8::/{n}"
        a, b = plain.count(rule, ip, when), small.count(rule, ip, when)
        assert a == b
        if n % 7 == 0:
            small.compact()
    for n in range(41):
        ip = f"192.0.2.{n}" if n < 30 else f"2001:db8::{n}" if n < 36 else f"2001:db8::/{n}"
        assert small.counts_of(ip) == plain.counts_of(ip)
    assert small.tracked() == plain.tracked()


def test_forget_and_note_banned_reach_compacted_addresses() -> None:
    p = BanPolicy(CFG, IgnoreList(()))
    p.count("no-rdns", "192.0.2.1", 100.0)
    p.count("no-rdns", "192.0.2.2", 100.0)
    assert p.compact() == 2 and p.tracked() == 2
    p.forget("192.0.2.1")
    p.note_banned("192.0.2.2", None)
    assert p.tracked() == 0 and p.counts_of("192.0.2.1") == {}


@pytest.mark.parametrize("ips", [200_000])
def test_a_botnet_of_one_off_addresses_costs_tens_of_bytes_each(ips: int) -> None:
    p = BanPolicy(CFG, IgnoreList(()))
    for i in range(ips):
        p.count(RULES[i % 3], f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1e9 + i / 1000)
    assert p.tracked() == ips
    assert p._compact.n >= ips - policy_mod.COMPACT_AT * 2
    assert p._compact.nbytes() / p._compact.n < 64
