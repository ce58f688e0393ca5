"""BanPolicy: maxretry within findtime on the lines' own clock, bantime growth and cap,
permanent bans, the ignore list, the login exemption, /64 aggregation, silent rules, memory."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.parse import Match
from mailopsd.blocker.policy import BanDecision, BanPolicy
from mailopsd.core.config import parse_config

T0 = time.mktime((2026, 11, 24, 8, 0, 0, 0, 0, -1))
HOUR = 3600.0


def ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def no_rdns(t: float, ip: str = "192.0.2.7") -> str:
    return f"{ts(t)} no host name found for IP address {ip}"


def auth_failed(t: float, ip: str = "192.0.2.7") -> str:
    return (f"{ts(t)} plain_server authenticator failed for (x) [{ip}]: 535 Incorrect "
            "authentication data (set_id=alice)")


def login(t: float, ip: str = "192.0.2.7") -> str:
    return (f"{ts(t)} 1xVyTg-0000db-27 <= alice@example.test H=(laptop) [{ip}] P=esmtpa "
            "A=plain_server:alice S=370 id=1@laptop")


def policy(blocker: dict[str, Any] | None = None, ignore: tuple[str, ...] = (),
           **kw: Any) -> BanPolicy:
    cfg = parse_config({"blocker": {"ignore_self": False, **(blocker or {})}}).blocker
    return BanPolicy(cfg, IgnoreList(ignore or cfg.ignore), **kw)


def feed(p: BanPolicy, lines: list[str]) -> list[BanDecision]:
    return [d for d in map(p.feed_line, lines) if d is not None]


def test_no_rdns_bans_at_the_eleventh_hit_within_the_hour() -> None:
    p = policy()
    assert feed(p, [no_rdns(T0 + i * 60) for i in range(10)]) == []
    d = p.feed_line(no_rdns(T0 + 600))
    assert d == BanDecision(ip="192.0.2.7", rule="no-rdns", count=11, duration=HOUR,
                            reason="11 no-rdns matches within 1h", first_seen=T0,
                            last_seen=T0 + 600)


def test_the_window_is_counted_on_the_lines_own_timestamps() -> None:
    # 30 hits, one every 6 min: never 11 within an hour, however fast they are read
    assert feed(policy(), [no_rdns(T0 + i * 360) for i in range(30)]) == []
    # 11 hits within 59 minutes of log time, read at once (a replay after a restart)
    decisions = feed(policy(), [no_rdns(T0 + i * 354) for i in range(11)])
    assert [d.count for d in decisions] == [11]


def test_slightly_out_of_order_lines_still_count() -> None:
    order = [3, 1, 2, 0, 5, 4, 7, 6, 9, 8]
    p = policy()
    assert feed(p, [auth_failed(T0 + i) for i in order[:4]]) == []
    d = p.feed_line(auth_failed(T0 + 4))
    assert d is not None and (d.rule, d.count, d.first_seen, d.last_seen) == (
        "auth-failed", 5, T0, T0 + 4)


def test_one_decision_per_ban_then_a_longer_ban_after_it_expires() -> None:
    p = policy()
    first = feed(p, [auth_failed(T0 + i) for i in range(5)])
    assert [(d.count, d.duration) for d in first] == [(5, HOUR)]
    assert feed(p, [auth_failed(T0 + 10 + i) for i in range(20)]) == []  # banned meanwhile
    later = T0 + 4 + HOUR  # the ban ran out (log time): counting starts again
    second = feed(p, [auth_failed(later + i) for i in range(5)])
    assert [(d.count, d.duration) for d in second] == [(5, 2 * HOUR)]
    assert "ban #2" in second[0].reason


@pytest.mark.parametrize(("previous", "expected"), [
    (0, HOUR), (1, 2 * HOUR), (3, 8 * HOUR), (7, 128 * HOUR), (8, 7 * 24 * HOUR),
    (10_000, 7 * 24 * HOUR),
])
def test_bantime_grows_with_previous_bans_up_to_the_cap(previous: int, expected: float) -> None:
    p = policy(previous_bans=lambda ip: previous)
    d = feed(p, [auth_failed(T0 + i) for i in range(5)])
    assert [x.duration for x in d] == [expected]


def test_factor_one_disables_growth_and_a_long_base_is_not_shortened_by_the_cap() -> None:
    p = policy({"bantime_factor": 1.0}, previous_bans=lambda ip: 5)
    assert [d.duration for d in feed(p, [auth_failed(T0 + i) for i in range(5)])] == [HOUR]
    p = policy({"bantime_max": "1d", "rules": {"auth-failed": {"bantime": "30d"}}},
               previous_bans=lambda ip: 2)
    assert [d.duration for d in feed(p, [auth_failed(T0 + i) for i in range(5)])] == [
        30 * 86400.0]


@pytest.mark.parametrize("spelling", ["permanent", "forever", -1])
def test_permanent_bans(spelling: object) -> None:
    p = policy({"rules": {"auth-failed": {"bantime": spelling}}})
    d = feed(p, [auth_failed(T0 + i) for i in range(5)])
    assert [x.duration for x in d] == [None]
    assert not d[0].expired(T0 + 10 * 365 * 86400)
    assert feed(p, [auth_failed(T0 + 10 * 86400 + i) for i in range(50)]) == []


def test_permanent_after_n_bans_like_fail2bans_recidive() -> None:
    p = policy({"permanent_after": 3}, previous_bans=lambda ip: 2)
    assert [d.duration for d in feed(p, [auth_failed(T0 + i) for i in range(5)])] == [None]
    p = policy({"permanent_after": 3}, previous_bans=lambda ip: 1)
    assert [d.duration for d in feed(p, [auth_failed(T0 + i) for i in range(5)])] == [
        2 * HOUR]


def test_ignored_addresses_are_never_banned() -> None:
    p = policy(ignore=("192.0.2.0/24", "2001:db8:1::/48"))
    lines = [auth_failed(T0 + i, "192.0.2.99") for i in range(100)]
    lines += [no_rdns(T0 + i, "2001:db8:1::5") for i in range(100)]
    assert feed(p, lines) == []
    assert p.ignored["auth-failed"] > 0 and p.ignored["no-rdns"] > 0
    assert [d.ip for d in feed(p, [auth_failed(T0 + i, "198.51.100.1") for i in range(5)])] == [
        "198.51.100.1"]


def test_loopback_and_own_addresses_are_ignored_by_default() -> None:
    cfg = parse_config({}).blocker
    ignore = IgnoreList.from_config(cfg)
    p = BanPolicy(cfg, ignore)
    assert feed(p, [auth_failed(T0 + i, "127.0.0.1") for i in range(50)]) == []
    assert feed(p, [auth_failed(T0 + i, "::1") for i in range(50)]) == []


def test_a_successful_login_exempts_the_address_from_no_rdns() -> None:
    p = policy()
    assert feed(p, [no_rdns(T0 + i) for i in range(10)]) == []
    p.feed_line(login(T0 + 11))  # the user's own connections: earlier hits are forgiven ...
    assert feed(p, [no_rdns(T0 + 20 + i) for i in range(50)]) == []  # ... and later ones too
    assert p.exempted == 50
    # but a login does not excuse password guessing
    assert [d.rule for d in feed(p, [auth_failed(T0 + 100 + i) for i in range(5)])] == [
        "auth-failed"]


def test_the_login_exemption_runs_out() -> None:
    p = policy({"auth_exempt": "1h"})
    p.feed_line(login(T0))
    assert feed(p, [no_rdns(T0 + 60 + i) for i in range(20)]) == []
    later = T0 + 2 * HOUR
    assert [d.rule for d in feed(p, [no_rdns(later + i) for i in range(11)])] == ["no-rdns"]


def test_auth_exempt_zero_turns_the_exemption_off() -> None:
    p = policy({"auth_exempt": 0})
    p.feed_line(login(T0))
    assert [d.count for d in feed(p, [no_rdns(T0 + 1 + i) for i in range(11)])] == [11]


def test_ipv6_clients_can_be_counted_and_banned_by_64() -> None:
    lines = [no_rdns(T0 + i, f"2001:db8:1:2::{i + 1:x}") for i in range(11)]
    assert feed(policy(), lines) == []
    d = feed(policy({"ipv6_aggregate": True}), lines)
    assert [(x.ip, x.count) for x in d] == [("2001:db8:1:2::/64", 11)]
    # a /64 holding an ignored address is never banned
    assert feed(policy({"ipv6_aggregate": True}, ignore=("2001:db8:1:2::99",)), lines) == []


def test_note_banned_and_forget() -> None:
    p = policy()
    p.note_banned("192.0.2.7", T0 + 100)  # restored from the bans table
    assert feed(p, [auth_failed(T0 + i) for i in range(50)]) == []
    p.forget("192.0.2.7")  # unbanned by hand: a fresh start, old hits do not count
    assert feed(p, [auth_failed(T0 + 60 + i) for i in range(4)]) == []
    p.forget("192.0.2.7")
    assert feed(p, [auth_failed(T0 + 70 + i) for i in range(4)]) == []
    assert [d.count for d in feed(p, [auth_failed(T0 + 80)])] == [5]
    p.note_banned("192.0.2.8", None)  # permanent
    assert feed(p, [auth_failed(T0 + 10**8 + i, "192.0.2.8") for i in range(9)]) == []


def test_feed_match_is_what_other_sources_use() -> None:
    p = policy()
    ds = [p.feed_match(Match("relay-denied", "198.51.100.4", T0 + i)) for i in range(5)]
    assert ds[:4] == [None] * 4 and ds[4] is not None and ds[4].rule == "relay-denied"
    assert p.feed_match(Match("no-such-rule", "198.51.100.5", T0)) is None


def test_a_failing_previous_bans_lookup_still_bans() -> None:
    def broken(ip: str) -> int:
        raise RuntimeError("database is locked")

    p = policy(previous_bans=broken)
    assert [d.duration for d in feed(p, [auth_failed(T0 + i) for i in range(5)])] == [HOUR]


def test_custom_rule_uses_its_own_thresholds() -> None:
    p = policy({"rules": {"trap": {"regex": r"^spam-trap hit \[(?P<ip>[^\]]+)\]",
                                   "prefilter": "spam-trap", "maxretry": 2, "findtime": "1d",
                                   "bantime": "2d"}}})
    lines = [f"{ts(T0 + i * HOUR)} spam-trap hit [203.0.113.{9}]" for i in range(2)]
    d = feed(p, lines)
    assert [(x.rule, x.ip, x.count, x.duration) for x in d] == [
        ("trap", "203.0.113.9", 2, 2 * 86400.0)]


def test_silent_rules_are_reported_while_the_log_keeps_moving() -> None:
    p = policy({"silence_warning": "1d"})
    day = 86400.0
    for i in range(49):  # two days of log: only no-rdns and logins ever match
        p.feed_line(no_rdns(T0 + i * HOUR, f"198.51.100.{i % 200 + 1}"))
    now = T0 + 48 * HOUR + 60
    assert p.stale_rules(now) == ["auth-failed", "relay-denied", "sync-error", "nonmail"]
    p.feed_line(auth_failed(T0 + 48 * HOUR))
    assert "auth-failed" not in p.stale_rules(now)
    assert p.stale_rules(now + 2 * day) == []  # the log stopped moving: nothing to say
    assert policy({"silence_warning": 0}).stale_rules(now) == []


def test_memory_stays_bounded_counters_are_pruned() -> None:
    p = policy()
    for i in range(60_000):  # one hit each from 60,000 addresses over 60,000 s
        p.feed_line(no_rdns(T0 + i, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))
    assert p.tracked() <= 60_000
    p.prune()
    assert p.tracked() <= 3601  # only the last hour's addresses are still counted
    assert p.lines == 60_000 and p.matches["no-rdns"] == 60_000
