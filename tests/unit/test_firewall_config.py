"""[blocker.firewall] and [blocker.flood]: defaults, and every mistake named by its key."""

from __future__ import annotations

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError


def test_defaults_close_port_25_with_iptables() -> None:
    cfg = parse_config({})
    fw = cfg.blocker.firewall
    assert (fw.backend, fw.ports, fw.action, fw.ipv6) == ("iptables", (25,), "drop", True)
    assert (fw.iptables_chain, fw.nftables_table) == ("mailopsd", "mailopsd")
    assert fw.iptables_set is True  # issue 12: bans as ipset members, one rule per family
    fl = cfg.blocker.flood
    assert (fl.enabled, fl.max_connections, fl.samples, fl.ports) == (True, 20, 2, ())


def test_valid_settings_load() -> None:
    cfg = parse_config({"blocker": {
        "firewall": {"backend": "nftables", "ports": [25, 465, 587], "action": "reject",
                     "nftables_table": "mo_bans", "timeout": "30s"},
        "flood": {"max_connections": 5, "interval": "2s", "bantime": "2h", "ports": [25]}}})
    assert cfg.blocker.firewall.ports == (25, 465, 587)
    assert cfg.blocker.firewall.timeout == 30.0
    assert cfg.blocker.flood.bantime == 7200.0


@pytest.mark.parametrize(("table", "values", "key"), [
    ("firewall", {"ports": []}, "blocker.firewall.ports"),
    ("firewall", {"ports": [25, 25]}, "blocker.firewall.ports"),
    ("firewall", {"ports": [70000]}, "blocker.firewall.ports"),
    ("firewall", {"ports": list(range(1, 17))}, "blocker.firewall.ports"),
    ("firewall", {"backend": "pf"}, "blocker.firewall.backend"),
    ("firewall", {"action": "tarpit"}, "blocker.firewall.action"),
    ("firewall", {"iptables_chain": "bad chain"}, "blocker.firewall.iptables_chain"),
    ("firewall", {"nftables_table": "x" * 40}, "blocker.firewall.nftables_table"),
    # 29 + "-v4" would pass ipset's 31-character limit for set names
    ("firewall", {"iptables_chain": "c" * 29}, "blocker.firewall.iptables_chain"),
    ("firewall", {"iptables_set": "yes"}, "blocker.firewall.iptables_set"),
    ("firewall", {"chain": "x"}, "blocker.firewall.chain"),
    ("flood", {"max_connections": 0}, "blocker.flood.max_connections"),
    ("flood", {"interval": "soon"}, "blocker.flood.interval"),
    ("flood", {"ports": [0]}, "blocker.flood.ports"),
])
def test_bad_values_are_reported_with_their_key(table: str, values: dict[str, object],
                                                key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"blocker": {table: values}})
    assert key in [p.key for p in err.value.problems]
