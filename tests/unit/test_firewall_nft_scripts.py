"""nftables scripts are built by pure functions: what the kernel will be told, checked as text."""

from __future__ import annotations

import json

import pytest

from mailopsd.core.errors import FirewallError
from mailopsd.firewall import nftables as nft
from mailopsd.firewall.base import canonical, canonical_bans


def test_canonical_forms() -> None:
    assert canonical("192.0.2.7") == "192.0.2.7"
    assert canonical("192.0.2.7/32") == "192.0.2.7"
    assert canonical("192.0.2.9/24") == "192.0.2.0/24"
    assert canonical("2001:DB8::1") == "2001:db8::1"
    assert canonical("2001:db8::5/64") == "2001:db8::/64"
    assert canonical("::ffff:198.51.100.3") == "198.51.100.3"


@pytest.mark.parametrize("bad", ["", "host.example", "192.0.2.300", "1.2.3.4; drop", "x" * 100])
def test_bad_targets_are_refused(bad: str) -> None:
    with pytest.raises(FirewallError):
        canonical_bans([bad])


def test_ipv6_refused_when_disabled() -> None:
    with pytest.raises(FirewallError, match="ipv6 is false"):
        canonical_bans(["2001:db8::1"], ipv6=False)


def test_setup_script_has_sets_chain_and_one_rule_per_set() -> None:
    text = nft.setup_script("mailopsd", [25, 465], "drop", ipv6=True)
    assert text.startswith("add table inet mailopsd\n")
    assert "add set inet mailopsd addr4 { type ipv4_addr; flags timeout; }" in text
    assert "add set inet mailopsd net6 { type ipv6_addr; flags interval, timeout; }" in text
    assert "flush chain inet mailopsd input" in text
    rules = [ln for ln in text.splitlines() if ln.startswith("add rule")]
    assert rules == [
        "add rule inet mailopsd input tcp dport { 25, 465 } ip saddr @addr4 drop",
        "add rule inet mailopsd input tcp dport { 25, 465 } ip saddr @net4 drop",
        "add rule inet mailopsd input tcp dport { 25, 465 } ip6 saddr @addr6 drop",
        "add rule inet mailopsd input tcp dport { 25, 465 } ip6 saddr @net6 drop",
    ]


def test_setup_script_reject_and_ipv4_only() -> None:
    text = nft.setup_script("t1", [25], "reject", ipv6=False)
    assert "reject with tcp reset" in text
    assert "addr6" not in text and "ip6" not in text


def test_elements_carry_whole_second_timeouts() -> None:
    assert nft.element("192.0.2.7", None) == "192.0.2.7"
    assert nft.element("192.0.2.7", 0.2) == "192.0.2.7 timeout 1s"
    assert nft.element("192.0.2.7", 3599.01) == "192.0.2.7 timeout 3600s"


def test_ban_script_replaces_timeout_with_add_delete_add() -> None:
    text = nft.ban_script("mailopsd", {"192.0.2.7": 60.0, "192.0.2.0/24": None})
    assert text.splitlines() == [
        "add element inet mailopsd addr4 { 192.0.2.7 }",
        "delete element inet mailopsd addr4 { 192.0.2.7 }",
        "add element inet mailopsd addr4 { 192.0.2.7 timeout 60s }",
        "add element inet mailopsd net4 { 192.0.2.0/24 }",
        "delete element inet mailopsd net4 { 192.0.2.0/24 }",
        "add element inet mailopsd net4 { 192.0.2.0/24 }",
    ]


def test_restore_script_flushes_sets_and_skips_expired() -> None:
    text = nft.restore_script("mailopsd", [25], "drop", True,
                              {"192.0.2.1": 10.0, "192.0.2.2": 0.0, "2001:db8::1": None})
    lines = text.splitlines()
    assert lines.index("flush set inet mailopsd addr4") < lines.index(
        "add element inet mailopsd addr4 { 192.0.2.1 timeout 10s }")
    assert "192.0.2.2" not in text
    assert "add element inet mailopsd addr6 { 2001:db8::1 }" in lines


def test_restore_script_of_10k_bans_is_one_line_per_set() -> None:
    bans = {f"10.{i // 65536}.{i // 256 % 256}.{i % 256}": 3600.0 for i in range(10_000)}
    text = nft.restore_script("mailopsd", [25], "drop", True, bans)
    assert sum(1 for ln in text.splitlines() if ln.startswith("add element")) == 1
    assert text.count("timeout 3600s") == 10_000


def test_create_script_is_the_cheap_path_for_new_elements() -> None:
    assert nft.create_script("m", {"192.0.2.7": 60.0, "192.0.2.8": None}).splitlines() == [
        "create element inet m addr4 { 192.0.2.7 timeout 60s, 192.0.2.8 }"]


def test_unban_script_deletes() -> None:
    assert nft.unban_script("m", ["2001:db8::/64", "2001:db8::1"]).splitlines() == [
        "delete element inet m net6 { 2001:db8::/64 }",
        "delete element inet m addr6 { 2001:db8::1 }",
    ]
    assert nft.unban_script("m", []) == ""


def test_flush_script_works_whether_or_not_the_table_exists() -> None:
    assert nft.flush_script("m") == "add table inet m\ndelete table inet m\n"


def test_parse_listing_reads_plain_timed_and_prefix_elements() -> None:
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "mailopsd"}},
        {"set": {"name": "addr4", "elem": [
            "192.0.2.2", {"elem": {"val": "192.0.2.1", "timeout": 5, "expires": 4}}]}},
        {"set": {"name": "net6", "elem": [
            {"elem": {"val": {"prefix": {"addr": "2001:db8::", "len": 64}}, "timeout": 3600,
                      "expires": 3599}}]}},
        {"set": {"name": "someone-elses", "elem": ["198.51.100.1"]}},
    ]}
    assert nft.parse_listing(json.dumps(listing)) == {
        "192.0.2.2": None, "192.0.2.1": 4.0, "2001:db8::/64": 3599.0}


def test_parse_listing_rejects_garbage() -> None:
    with pytest.raises(FirewallError):
        nft.parse_listing("not json")
