"""Unit tests of ``orchestrator.engine.cron``: ``parse`` and ``next_fire``.

Times are fixed epochs computed from UTC datetimes, never the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest

from orchestrator.engine import cron


def ts(*args: int) -> float:
    """Epoch seconds of a UTC date and time."""
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def utc(epoch: float | None) -> datetime:
    assert epoch is not None
    return datetime.fromtimestamp(epoch, UTC)


def fires(expression: str, after: float, n: int, timezone: str = "UTC") -> list[float]:
    trigger = cron.parse(expression, timezone)
    out: list[float] = []
    t = after
    for _ in range(n):
        nxt = cron.next_fire(trigger, t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


# 2024-01-15 is a Monday in winter (CET, UTC+1); 2024-07-15 a Monday in summer (CEST, UTC+2).
WINTER = ts(2024, 1, 15)
SUMMER = ts(2024, 7, 15)


# -- parse ---------------------------------------------------------------------------------------


def test_five_fields_are_minute_hour_day_month_weekday() -> None:
    assert utc(fires("30 14 * * *", WINTER, 1)[0]) == datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
    assert utc(fires("0 0 1 * *", WINTER, 1)[0]) == datetime(2024, 2, 1, tzinfo=UTC)
    assert utc(fires("0 0 1 6 *", WINTER, 1)[0]) == datetime(2024, 6, 1, tzinfo=UTC)
    assert utc(fires("*/15 * * * *", WINTER + 1, 1)[0]) == datetime(2024, 1, 15, 0, 15,
                                                                        tzinfo=UTC)


def test_six_fields_put_seconds_first() -> None:
    assert utc(fires("30 * * * * *", WINTER, 1)[0]) == datetime(2024, 1, 15, 0, 0, 30,
                                                                  tzinfo=UTC)
    assert utc(fires("15 30 14 * * *", WINTER, 1)[0]) == datetime(2024, 1, 15, 14, 30, 15,
                                                                    tzinfo=UTC)
    every_10s = fires("*/10 * * * * *", WINTER, 3)
    assert [t - WINTER for t in every_10s] == [10, 20, 30]


def test_a_five_field_expression_fires_on_whole_minutes() -> None:
    assert [t - WINTER for t in fires("* * * * *", WINTER, 3)] == [60, 120, 180]


def test_extra_whitespace_is_accepted() -> None:
    assert fires("  0   9 * *   * ", WINTER, 1) == fires("0 9 * * *", WINTER, 1)


def test_utc_is_the_default_time_zone() -> None:
    trigger = cron.parse("0 9 * * *")
    assert str(trigger.timezone) == "UTC"
    assert utc(cron.next_fire(trigger, WINTER)) == datetime(2024, 1, 15, 9, tzinfo=UTC)


def test_time_zone_in_winter() -> None:
    """09:00 in Paris is 08:00 UTC in winter (CET, UTC+1)."""
    trigger = cron.parse("0 9 * * *", "Europe/Paris")
    assert cron.next_fire(trigger, WINTER) == ts(2024, 1, 15, 8)
    assert cron.next_fire(trigger, ts(2024, 1, 15, 8)) == ts(2024, 1, 16, 8)


def test_time_zone_in_summer() -> None:
    """09:00 in Paris is 07:00 UTC in summer (CEST, UTC+2)."""
    trigger = cron.parse("0 9 * * *", "Europe/Paris")
    assert cron.next_fire(trigger, SUMMER) == ts(2024, 7, 15, 7)


def test_time_zone_west_of_utc() -> None:
    """09:00 in New York is 14:00 UTC in winter (EST, UTC-5)."""
    trigger = cron.parse("0 9 * * *", "America/New_York")
    assert cron.next_fire(trigger, WINTER) == ts(2024, 1, 15, 14)


def test_daily_fires_follow_the_dst_change() -> None:
    """Paris moves to summer time on 2024-03-31: 09:00 local moves from 08:00 to 07:00 UTC."""
    got = fires("0 9 * * *", ts(2024, 3, 30), 2, "Europe/Paris")
    assert got == [ts(2024, 3, 30, 8), ts(2024, 3, 31, 7)]


@pytest.mark.parametrize("expression", [
    "61 * * * *",        # minute out of range
    "* 24 * * *",        # hour out of range
    "* * 32 * *",        # day out of range
    "* * * 13 *",        # month out of range
    "x * * * *",         # not a number
    "*/0 * * * *",       # zero step
    "60 * * * * *",      # second out of range (6 fields)
])
def test_an_expression_that_does_not_parse(expression: str) -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse(expression)
    assert info.value.field == "expression"
    assert "does not parse" in str(info.value)
    assert repr(expression) in str(info.value)


@pytest.mark.parametrize("expression", ["", "*", "* * * *", "0 0 0 * * * *"])
def test_a_wrong_number_of_fields(expression: str) -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse(expression)
    assert info.value.field == "expression"
    assert f"has {len(expression.split())} fields" in str(info.value)
    assert "use 5" in str(info.value)


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "", "../etc/passwd", "Europe/", "utc"])
def test_an_unknown_time_zone(timezone: str) -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse("0 9 * * *", timezone)
    assert info.value.field == "timezone"
    assert "unknown time zone" in str(info.value)
    assert "Europe/Paris" in str(info.value)  # the hint


def test_the_time_zone_is_checked_before_the_expression() -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse("not a cron", "Mars/Olympus")
    assert info.value.field == "timezone"


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(cron.CronError, ValueError)


# -- weekday numbering (crontab semantics) -----------------------------------------------------


def test_weekday_zero_is_sunday_as_in_crontab() -> None:
    """BUG: the module promises crontab fields, where weekday 0 (and 7) is Sunday, but
    ``parse`` hands the field to APScheduler 3 (``CronTrigger.from_crontab``, and
    ``day_of_week=`` for six fields), whose numbering starts at 0 = Monday. So
    "0 9 * * 0" fires on Mondays. Fix: translate numeric weekdays (0/7 -> sun, 1 -> mon,
    ... 6 -> sat, ranges and lists included) to names before building the trigger."""
    got = utc(fires("0 9 * * 0", WINTER, 1)[0])  # from Monday 2024-01-15 00:00
    assert got == datetime(2024, 1, 21, 9, tzinfo=UTC), got.strftime("%A %Y-%m-%d")


def test_weekday_range_one_to_five_is_monday_to_friday() -> None:
    """BUG (same cause): "1-5" (crontab: Monday to Friday) means Tuesday to Saturday."""
    got = {utc(t).strftime("%a") for t in fires("0 9 * * 1-5", WINTER, 14)}
    assert got == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_weekday_seven_is_sunday_as_in_crontab() -> None:
    """BUG (same cause): crontab accepts 7 for Sunday; ``parse`` refuses it."""
    got = utc(fires("0 9 * * 7", WINTER, 1)[0])
    assert got.strftime("%A") == "Sunday"


def test_weekday_names_mean_what_they_say() -> None:
    assert {utc(t).strftime("%a") for t in fires("0 9 * * sun", WINTER, 3)} == {"Sun"}
    assert {utc(t).strftime("%a") for t in fires("0 9 * * mon-fri", WINTER, 10)} == {
        "Mon", "Tue", "Wed", "Thu", "Fri"}


# -- next_fire -----------------------------------------------------------------------------------


def test_next_fire_is_strictly_after_a_matching_time() -> None:
    trigger = cron.parse("0 9 * * *")
    at_nine = ts(2024, 1, 15, 9)
    assert cron.next_fire(trigger, at_nine) == ts(2024, 1, 16, 9)
    assert cron.next_fire(trigger, at_nine - 0.001) == at_nine
    assert cron.next_fire(trigger, at_nine + 0.001) == ts(2024, 1, 16, 9)


@pytest.mark.parametrize("after", [WINTER, WINTER + 0.25, WINTER + 0.999999, WINTER + 59.5])
def test_next_fire_is_strictly_after_its_argument(after: float) -> None:
    for expression in ("* * * * * *", "* * * * *", "*/7 * * * * *", "0 0 * * *"):
        nxt = cron.next_fire(cron.parse(expression), after)
        assert nxt is not None and nxt > after, (expression, after, nxt)


def test_every_second_fires_one_second_apart() -> None:
    got = fires("* * * * * *", WINTER, 10)
    assert got[0] == WINTER + 1
    assert [b - a for a, b in pairwise(got)] == [1.0] * 9


def test_every_second_from_a_fractional_time_fires_on_the_next_whole_second() -> None:
    trigger = cron.parse("* * * * * *")
    assert cron.next_fire(trigger, WINTER + 0.25) == WINTER + 1
    assert cron.next_fire(trigger, WINTER + 0.999) == WINTER + 1


def test_every_second_across_the_autumn_dst_change_stays_one_second_apart() -> None:
    """Paris leaves summer time at 01:00 UTC on 2024-10-27: local time repeats an hour."""
    got = fires("* * * * * *", ts(2024, 10, 27, 0, 59, 57), 6, "Europe/Paris")
    assert [b - a for a, b in pairwise(got)] == [1.0] * 5
    assert got[0] == ts(2024, 10, 27, 0, 59, 58)


def test_next_fire_from_an_old_time_is_not_clamped_to_now() -> None:
    """The trigger has no start date: a time long past gives the fire right after it."""
    trigger = cron.parse("0 0 1 1 *")
    assert cron.next_fire(trigger, ts(2001, 6, 1)) == ts(2002, 1, 1)


def test_an_expression_that_never_fires_does_not_parse() -> None:
    """February 30th never comes: APScheduler gives up (past its last year); such a cron is
    refused, naming the expression, rather than stored to never fire."""
    for expr in ("0 0 30 2 *", "0 0 0 31 4 *"):  # April 31st
        with pytest.raises(cron.CronError, match="never fires") as info:
            cron.parse(expr)
        assert info.value.field == "expression"
    assert cron.next_fire(cron.parse("0 0 29 2 *"), WINTER) is not None  # leap years


def test_a_repeated_local_time_does_not_fire_twice() -> None:
    """Paris goes back from 03:00 CEST to 02:00 CET on 2024-10-27 (01:00 UTC)."""
    first_0205 = ts(2024, 10, 27, 0, 5)  # 02:05 CEST
    second_0205 = ts(2024, 10, 27, 1, 5)  # 02:05 CET, one hour later
    assert cron.repeats_wall_clock(first_0205, second_0205, "Europe/Paris")
    assert not cron.repeats_wall_clock(first_0205, second_0205, "UTC")
    assert not cron.repeats_wall_clock(None, second_0205, "Europe/Paris")
    after = ts(2024, 10, 27, 2, 5)  # 03:05 CET: later than anything fired
    assert not cron.repeats_wall_clock(first_0205, after, "Europe/Paris")
