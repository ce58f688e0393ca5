"""Local timestamps read through the hour cache (parse.plain_hour) equal mktime's reading of
every minute, in zones with DST, half-hour and two-hour changes, around every change."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import pytest

from mailopsd.blocker import fastpath, parse, scan
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.cli.cmd_scan import _ts
from mailopsd.core.config import parse_config

# zones with a change of 1 h (both hemispheres), 30 min (Lord Howe), 2 h (Troll), none
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
         "Antarctica/Troll", "Asia/Kolkata", "UTC")


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """TZ set to the zone for the test (caches emptied), the machine's own restored after."""
    # glibc reads an unknown zone as UTC without a word: every check would pass vacuously
    assert os.path.exists(f"/usr/share/zoneinfo/{request.param}"), "tzdata is not installed"
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    _clear()
    yield request.param
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()
    _clear()


def _clear() -> None:
    parse._MINUTES.clear()
    parse._LOCAL.clear()
    parse._HOURS.clear()


def _changes(year: int) -> list[float]:
    """The instants (to the hour) where the zone's UTC offset changes during ``year``."""
    t = time.mktime((year, 1, 1, 0, 0, 0, 0, 0, -1))
    out, off = [], time.localtime(t).tm_gmtoff
    for _ in range(366 * 24):
        t += 3600
        now = time.localtime(t).tm_gmtoff
        if now != off:
            out.append(t)
            off = now
    return out


def _unique(minute: tuple[int, int, int, int, int]) -> float | None:
    """mktime's reading of a local minute when it names exactly one instant, else None."""
    y, mo, d, h, mi = minute
    found = set()
    for dst in (0, 1):
        t = time.mktime((y, mo, d, h, mi, 0, 0, 0, dst))
        if tuple(time.localtime(t))[:5] == minute:
            found.add(t)
    return found.pop() if len(found) == 1 else None


@pytest.mark.parametrize("zone", ZONES, indirect=True)
def test_minutes_around_every_zone_change_read_as_mktime_does(zone: str) -> None:
    days = {0.0} | {round(c / 86400) * 86400.0 for c in _changes(2026)}
    checked = arithmetic = 0
    for day in sorted(days):
        lo = (time.mktime((*time.localtime(day - 2 * 86400)[:3], 0, 0, 0, 0, 0, -1))
              if day else time.mktime((2026, 6, 10, 0, 0, 0, 0, 0, -1)))
        for k in range(5 * 24 * 60):  # five local days of minutes, around the change
            lt = time.localtime(lo + 60 * k)
            minute = f"{lt.tm_year:04d}-{lt.tm_mon:02d}-{lt.tm_mday:02d} {lt.tm_hour:02d}:" \
                     f"{lt.tm_min:02d}"
            want = _unique(tuple(lt)[:5])  # type: ignore[arg-type]
            got = parse._minute_epoch(minute, None)
            if want is not None:  # a repeated minute has two right answers
                assert got == want, (zone, minute)
            checked += 1
            arithmetic += parse._HOURS.get(minute[:13]) is not None
    assert checked >= 5 * 24 * 60
    # the cache really serves: all but the hours near a change (at most 6 per change)
    assert arithmetic >= checked - 60 * 6 * (len(days) - 1) - 60


@pytest.mark.parametrize("zone", ["Europe/Berlin"], indirect=True)
def test_a_skipped_or_repeated_hour_is_read_minute_by_minute(zone: str) -> None:
    # 2026-03-29 02:00 CET does not exist (clocks go to 03:00); 2026-10-25 02:xx happens twice
    assert parse._minute_epoch("2026-03-29 02:30", None) == time.mktime(
        (2026, 3, 29, 2, 30, 0, 0, 0, -1))
    assert parse._HOURS["2026-03-29 02"] is None
    parse._minute_epoch("2026-10-25 02:30", None)
    assert parse._HOURS["2026-10-25 02"] is None
    parse._minute_epoch("2026-07-01 12:34", None)
    assert parse._HOURS["2026-07-01 12"] == time.mktime((2026, 7, 1, 12, 0, 0, 0, 0, -1))


def test_invalid_minutes_stay_invalid() -> None:
    _clear()
    for bad in ("2026-02-30 10:00", "2026-12-07 24:00", "2026-12-07 10:60", "1969-12-31 23:59"):
        assert parse._minute_epoch(bad, None) is None, bad
    assert parse._minute_epoch("2026-12-07 10:59", None) == time.mktime(
        (2026, 12, 7, 10, 59, 0, 0, 0, -1))


@pytest.mark.parametrize("zone", ["Europe/Berlin"], indirect=True)
def test_every_hour_of_a_year_is_read_exactly(zone: str) -> None:
    # minutes 0, 1, 31 and 59 of every local hour of 2026: an hour whose offset changes
    # inside it (read by arithmetic from its minute 0) would be off by the change
    t = time.mktime((2026, 1, 1, 0, 0, 0, 0, 0, -1))
    for _ in range(365 * 24):
        lt = time.localtime(t)
        for mi in (0, 1, 31, 59):
            minute = (lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_hour, mi)
            want = _unique(minute)
            if want is not None:
                y, mo, d, h, _ = minute
                text = f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}"
                assert parse._minute_epoch(text, None) == want, text
        t += 3600


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Australia/Lord_Howe"], indirect=True)
def test_the_c_scanner_reads_minutes_around_zone_changes_as_python_does(zone: str) -> None:
    parser = BanPolicy(parse_config({}).blocker, IgnoreList(())).parser
    keys = list(parser.keywords or ())
    c = fastpath.c_parser(keys, parser)
    if c is None:
        pytest.skip("the C extension is not built")
    lines = []
    for change in _changes(2026):
        for k in range(-200, 200):  # every minute from 3 h before to 3 h after, + junk hours
            lt = time.localtime(change + 60 * k)
            lines.append(f"{lt.tm_year:04d}-{lt.tm_mon:02d}-{lt.tm_mday:02d} {lt.tm_hour:02d}:"
                         f"{lt.tm_min:02d}:07 no host name found for IP address 192.0.2.{k % 250}")
    lines += ["2026-02-30 10:00:00 no host name found for IP address 192.0.2.1",
              "2026-03-29 02:30:00 no host name found for IP address 192.0.2.2",
              "2026-12-07 24:00:00 no host name found for IP address 192.0.2.3",
              "2026-12-07 10:99:00 no host name found for IP address 192.0.2.4"]
    body = ("\n".join(lines) + "\n").encode()
    _clear()
    from_c = c(body)
    _clear()
    assert from_c == scan.parse_block(body, keys, parser)
    assert len(from_c[0]) >= 400 * len(_changes(2026))


def test_the_date_check_is_datetimes() -> None:
    import datetime

    for y in (1970, 1999, 2000, 2024, 2026, 2100, 2400, 9999):
        for mo in range(0, 14):
            for d in range(0, 33):
                try:
                    datetime.date(y, mo, d)
                    real = True
                except ValueError:
                    real = False
                assert parse._is_date(y, mo, d) == real, (y, mo, d)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC"], indirect=True)
def test_scan_log_writes_ban_times_as_strftime_does(zone: str) -> None:
    rnd = random.Random(7)
    edges = [0.0, 1e9, 1774744200.5, 1792450800.0]  # around Berlin's 2026 changes too
    for epoch in edges + [rnd.uniform(0, 4e9) for _ in range(5000)]:
        assert _ts(epoch) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)), epoch
