"""What the admin reads about a bad config: did-you-mean, fail2ban's words, no Python internals."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.key: p.message for p in info.value.problems}


def test_misspelt_keys_get_the_closest_known_key() -> None:
    found = problems({"blocker": {"mainlgo": "/var/log/exim4/mainlog"},
                      "daemon": {"state_dirs": "/var/lib/x"}, "sent": {"enable": True}})
    assert "did you mean 'mainlog'" in found["blocker.mainlgo"]
    assert "did you mean 'state_dir'" in found["daemon.state_dirs"]
    assert "did you mean 'enabled'" in found["sent.enable"]


def test_misspelt_rule_names_are_reported_under_their_own_key_with_a_suggestion() -> None:
    found = problems({"blocker": {"rules": {"no_rdns": {"maxretry": 3},
                                            "authfailed": {"maxretry": 3}}}})
    assert "did you mean 'no-rdns'" in found["blocker.rules.no_rdns"]
    assert "did you mean 'auth-failed'" in found["blocker.rules.authfailed"]


@pytest.mark.parametrize(("data", "key", "points_to"), [
    ({"blocker": {"ignoreip": ["192.0.2.1"]}}, "blocker.ignoreip", "blocker.ignore"),
    ({"blocker": {"bantime": {"increment": True}}}, "blocker.bantime", "blocker.bantime_factor"),
    ({"blocker": {"bantime": {"maxtime": "1w"}}}, "blocker.bantime", "blocker.bantime_max"),
    ({"blocker": {"logpath": "/var/log/exim4/mainlog"}}, "blocker.logpath", "blocker.mainlog"),
    ({"blocker": {"findtime": "10m"}}, "blocker.findtime", "blocker.rules.<rule>.findtime"),
    ({"blocker": {"firewall": {"banaction": "nftables"}}}, "blocker.firewall.banaction",
     "blocker.firewall.backend"),
    ({"exim": {"enabled": True}}, "exim", "[blocker]"),
])
def test_fail2ban_words_point_to_mailopsds(data: dict, key: str, points_to: str) -> None:
    found = problems(data)
    assert points_to in found[key], found


@pytest.mark.parametrize("data", [
    {"daemon": {"stop_timeout": 0}},
    {"jobs": {"learn-spam": {"timeout": "0s"}}},
    {"blocker": {"bantime_max": 0}},
    {"daemon": {"state_dir": 2024}},
    {"daemon": {"history_days": [1, 2]}},
    {"blocker": {"rules": {"auth-failed": {"bantime": [1]}}}},
    {"blocker": {"rules": "no-rdns"}},
])
def test_messages_hold_no_python_class_names_or_reprs(data: dict) -> None:
    for message in problems(data).values():
        for internal in ("Duration(", "BanTime(", "AbsPath(", "<class", "dict[", "True",
                         "mailopsd.", "'>"):
            assert internal not in message, message


def test_a_zero_duration_is_shown_as_written() -> None:
    assert problems({"daemon": {"stop_timeout": 0}})["daemon.stop_timeout"] == (
        "must be greater than 0 (got 0)")


def test_a_regex_python_warns_about_is_a_config_error_not_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping would fail the test
        found = problems({"blocker": {"rules": {"mine": {"regex": r"[[x](?P<ip>\S+)"}}}})
    assert "ambiguous regular expression" in found["blocker.rules.mine.regex"]


def test_a_network_with_host_bits_is_an_error_naming_the_key() -> None:
    found = problems({"blocker": {"ignore": ["192.0.2.0/24", "198.51.100.7/24"]}})
    assert set(found) == {"blocker.ignore[1]"}
    assert "host bits" in found["blocker.ignore[1]"]
    assert "198.51.100.0/24" in found["blocker.ignore[1]"]


def test_single_addresses_and_clean_networks_are_accepted() -> None:
    cfg = parse_config({"blocker": {"ignore": ["198.51.100.7", "2001:db8::/32", "192.0.2.0/24"]}})
    assert cfg.blocker.ignore == ("198.51.100.7/32", "2001:db8::/32", "192.0.2.0/24")


_scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
                     st.text(max_size=20), st.dates(), st.sampled_from(
                         ["10m", "0", "permanent", "198.51.100.7/24", "/x", "(?P<ip>x)", "[[a]"]))
_keys = st.sampled_from(["daemon", "blocker", "rules", "no-rdns", "no_rdns", "ignore", "ignoreip",
                         "bantime", "maxretry", "regex", "firewall", "ports", "jobs",
                         "learn-spam", "timeout", "state_dir", "sent", "enabled", "x"])
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_any_toml_data_gives_a_config_or_plain_config_errors(data: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            parse_config(data)
        except ConfigError as exc:
            for p in exc.problems:
                assert p.key and p.message
                for internal in ("Duration(", "BanTime(", "datetime.", "<class", "Traceback"):
                    assert internal not in p.message, p
