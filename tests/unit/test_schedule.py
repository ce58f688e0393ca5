"""Crontab expressions keep crontab's meaning under APScheduler (weekdays from Sunday = 0)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailopsd.core.schedule import parse_cron
from mailopsd.daemon.scheduling import catch_up_due

UTC = UTC
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 2026-11-23 is a Monday


def next_fire(expr: str, after: datetime = MONDAY_NOON) -> datetime:
    nxt = parse_cron(expr).next_after(after)
    assert nxt is not None
    return nxt


@pytest.mark.parametrize("dow", ["0", "7", "sun", "Sunday"])
def test_weekday_zero_and_seven_mean_sunday_as_in_crontab(dow: str) -> None:
    fire = next_fire(f"0 3 * * {dow}")
    assert fire.strftime("%A %H:%M") == "Sunday 03:00"


def test_apscheduler_from_crontab_would_have_meant_monday() -> None:
    # the trap this module exists for: APScheduler counts weekdays from Monday
    from apscheduler.triggers.cron import CronTrigger

    trap = CronTrigger.from_crontab("0 3 * * 0", timezone=UTC)
    assert trap.get_next_fire_time(None, MONDAY_NOON).strftime("%A") == "Monday"


def test_ranges_lists_and_steps_use_crontab_numbers() -> None:
    assert parse_cron("0 9 * * 1-5").day_of_week == "mon,tue,wed,thu,fri"
    assert parse_cron("0 9 * * 5-7").day_of_week == "sun,fri,sat"
    assert parse_cron("0 9 * * 0,6").day_of_week == "sun,sat"
    assert parse_cron("0 9 * * */2").day_of_week == "sun,tue,thu,sat"
    assert parse_cron("0 9 * * mon-wed").day_of_week == "mon,tue,wed"
    assert next_fire("0 9 * * 6").strftime("%A") == "Saturday"


def test_macros_expand() -> None:
    assert next_fire("@daily") == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert next_fire("@weekly").strftime("%A") == "Sunday"
    assert next_fire("@monthly") == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("expr, words", [
    ("0 3 * *", "5 crontab fields"),
    ("0 3 1 * 1", "both day-of-month and day-of-week"),
    ("0 3 * * 8", "out of range"),
    ("0 3 * * funday", "unknown day-of-week"),
    ("0 25 * * *", "invalid crontab"),
    ("0 3 * * 5-1", "backwards"),
    ("0;rm 3 * * *", "invalid characters"),
])
def test_bad_expressions_are_rejected_with_a_reason(expr: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_cron(expr)


def test_missed_daily_run_is_caught_up() -> None:
    last = datetime(2026, 11, 22, 4, 30, tzinfo=UTC).timestamp()  # Sunday's run
    assert catch_up_due("30 4 * * *", last, MONDAY_NOON)  # Monday 04:30 was missed


def test_run_after_the_last_scheduled_time_is_not_caught_up() -> None:
    last = datetime(2026, 11, 23, 4, 31, tzinfo=UTC).timestamp()  # today's ran
    assert not catch_up_due("30 4 * * *", last, MONDAY_NOON)


def test_monthly_job_is_not_rerun_within_its_month() -> None:
    last = datetime(2026, 11, 1, 5, 0, tzinfo=UTC).timestamp()
    assert not catch_up_due("0 5 1 * *", last, MONDAY_NOON)
    assert catch_up_due("0 5 1 * *", last, datetime(2026, 12, 2, tzinfo=UTC))


def test_job_that_never_ran_waits_for_its_schedule() -> None:
    assert not catch_up_due("30 4 * * *", None, MONDAY_NOON)
