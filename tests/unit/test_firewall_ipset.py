"""The iptables backend's ipset side, without a kernel: names, member text, netlink entries,
error text, and that neither pyroute2 nor python-iptables is loaded before a set is used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import FirewallError
from mailopsd.firewall import ipset
from mailopsd.firewall.iptables import IptablesBackend


def test_set_names_follow_the_chain_and_fit_ipsets_limit() -> None:
    assert ipset.set_names("mailopsd") == ("mailopsd-v4", "mailopsd-v6")
    longest = "c" * 28  # the longest chain name check-config accepts
    cfg = parse_config({"blocker": {"firewall": {"iptables_chain": longest}}})
    b = IptablesBackend(cfg.blocker.firewall)
    assert max(len(n) for n in (*b.sets, *b.temp_sets)) == 31  # IPSET_MAXNAMELEN - 1


@pytest.mark.parametrize(("target", "parts"), [
    ("192.0.2.7", ("192.0.2.7", 32)),
    ("203.0.113.0/24", ("203.0.113.0", 24)),
    ("2001:db8::2", ("2001:db8::2", 128)),
    ("2001:db8:5::/64", ("2001:db8:5::", 64)),
])
def test_members_round_trip_between_ban_text_and_address_with_prefix(
        target: str, parts: tuple[str, int]) -> None:
    assert ipset.split(target) == parts
    assert ipset.join(*parts) == target


def test_bulk_entries_carry_the_family_the_address_and_the_prefix() -> None:
    assert ipset._entry("2001:db8::/64") == [
        ("IPSET_ATTR_IP_FROM", {"attrs": [("IPSET_ATTR_IPADDR_IPV6", "2001:db8::")]}),
        ("IPSET_ATTR_CIDR", 64)]
    assert ipset._entry("192.0.2.7")[1] == ("IPSET_ATTR_CIDR", 32)


def test_pyroute2_errors_are_said_as_text() -> None:
    assert ipset._describe(Exception(4103, "it's not added")) == "it's not added (code 4103)"
    assert ipset._describe(OSError("boom")) == "boom"
    assert ipset._describe(RuntimeError()) == "RuntimeError"


def test_a_missing_pyroute2_is_a_firewall_error_naming_the_way_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyroute2.ipset", None)  # import fails
    with pytest.raises(FirewallError, match="python3-pyroute2 is missing.*iptables_set = false"):
        ipset.Ipsets().exists("mailopsd-v4")


def test_building_the_backend_loads_neither_pyroute2_nor_python_iptables() -> None:
    code = ("import sys\n"
            "from mailopsd.core.config import parse_config\n"
            "from mailopsd.firewall import make_backend\n"
            "make_backend(parse_config({}))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'iptc')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
