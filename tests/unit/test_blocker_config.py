"""[blocker] and [blocker.rules.<name>]: defaults, spellings, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from mailopsd.blocker.ignore import IgnoreList, host_addresses
from mailopsd.blocker.rules import rule_specs
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import BUILTIN_RULES
from mailopsd.core.config.schema_blocker import BanTime
from mailopsd.core.errors import ConfigError


def blocker(data: dict[str, Any]) -> Any:
    return parse_config({"blocker": data}).blocker


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        blocker(data)
    return [str(p) for p in exc.value.problems]


def test_defaults_are_what_a_debian_admin_expects() -> None:
    specs = rule_specs(blocker({}))
    table = {n: (s.enabled, s.maxretry, s.findtime, s.bantime) for n, s in specs.items()}
    assert table == {
        "no-rdns": (True, 11, 3600.0, 3600.0),  # the seed's "more than ten"
        "auth-failed": (True, 5, 600.0, 3600.0),  # fail2ban's maxretry/findtime
        "relay-denied": (True, 5, 3600.0, 3600.0),
        "sync-error": (True, 3, 3600.0, 3600.0),
        "nonmail": (True, 3, 3600.0, 3600.0),
    }
    b = blocker({})
    assert (b.ignore, b.ignore_self, b.ipv6_aggregate) == ((), True, False)
    assert (b.auth_exempt, b.silence_warning) == (86400.0, 7 * 86400.0)
    assert (b.bantime_factor, b.bantime_max, b.permanent_after) == (2.0, 7 * 86400.0, 0)


def test_rule_settings_override_only_what_they_name() -> None:
    specs = rule_specs(blocker({"rules": {"no-rdns": {"enabled": False},
                                          "auth-failed": {"maxretry": 3, "bantime": "2h"}}}))
    assert not specs["no-rdns"].enabled
    assert (specs["auth-failed"].maxretry, specs["auth-failed"].findtime,
            specs["auth-failed"].bantime) == (3, 600.0, 7200.0)


@pytest.mark.parametrize(("value", "seconds"), [
    ("permanent", None), ("Forever", None), (-1, None), ("90m", 5400.0), (30, 30.0),
])
def test_bantime_spellings(value: object, seconds: float | None) -> None:
    assert BanTime.parse(value).seconds == seconds


@pytest.mark.parametrize(("data", "key"), [
    ({"rules": {"mine": {"regex": "("}}}, "blocker.rules.mine.regex"),
    ({"rules": {"mine": {"regex": r"no group (\S+)"}}}, "blocker.rules.mine.regex"),
    ({"rules": {"mine": {"maxretry": 3}}}, "blocker.rules.mine"),
    ({"rules": {"no-rdns": {"regex": "(?P<ip>x)"}}}, "blocker.rules.no-rdns"),
    ({"rules": {"Mine_Rule": {"regex": "(?P<ip>x)"}}}, "blocker.rules.Mine_Rule"),
    ({"rules": {"flood": {"regex": "(?P<ip>x)"}}}, "blocker.rules.flood"),
    ({"rules": {"auth-failed": {"bantime": 0}}}, "blocker.rules.auth-failed.bantime"),
    ({"rules": {"auth-failed": {"bantime": "soon"}}}, "blocker.rules.auth-failed.bantime"),
    ({"rules": {"auth-failed": {"maxretry": 0}}}, "blocker.rules.auth-failed.maxretry"),
    ({"rules": {"auth-failed": {"findtme": "1h"}}}, "blocker.rules.auth-failed.findtme"),
    ({"ignore": ["192.0.2.0/33"]}, "blocker.ignore[0]"),
    ({"bantime_factor": 0.5}, "blocker.bantime_factor"),
    ({"auth_exempt": "-1h"}, "blocker.auth_exempt"),
])
def test_bad_settings_are_refused_naming_the_key(data: dict[str, Any], key: str) -> None:
    assert any(p.startswith(key + ":") for p in problems(data)), problems(data)


def test_every_problem_is_reported_at_once() -> None:
    got = problems({"rules": {"a": {"regex": "("}, "b": {"regex": "x"}}, "bantime_max": 0})
    assert len(got) == 3


def test_custom_rule_names_must_not_clash() -> None:
    got = problems({"rules": {"authenticated": {"regex": "(?P<ip>x)"}}})
    assert "authenticated" in got[0]
    assert set(BUILTIN_RULES) == {"no-rdns", "auth-failed", "relay-denied", "sync-error",
                                  "nonmail"}


def test_ignore_list_holds_loopback_own_addresses_and_configured_cidrs() -> None:
    ig = IgnoreList.from_config(blocker({"ignore": ["198.51.100.0/24", "2001:db8:5::/48"]}))
    assert ig.contains("127.0.0.1") and ig.contains("127.255.0.9") and ig.contains("::1")
    assert ig.contains("198.51.100.77") and ig.contains("2001:db8:5:1::1")
    assert not ig.contains("198.51.101.1") and not ig.contains("2001:db8:6::1")
    own = [a for a in host_addresses() if not a.startswith(("127.", "::1"))]
    for addr in own:
        assert ig.contains(addr), addr
    ig2 = IgnoreList.from_config(blocker({"ignore_self": False}))
    assert not ig2.contains("127.0.0.1") and len(ig2) == 0


def test_ignore_list_checks_networks_and_refuses_garbage() -> None:
    ig = IgnoreList(["192.0.2.0/25", "::ffff:198.51.100.7"])
    assert ig.contains("198.51.100.7")  # v4-mapped entries mean the IPv4 address
    assert ig.contains("192.0.2.0/24")  # overlaps
    assert not ig.contains("192.0.2.128")
    assert ig.contains("not an address")  # never ban what cannot be parsed
