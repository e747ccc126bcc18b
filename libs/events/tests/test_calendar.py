"""The working-day calendar: weekends, public holidays, make-up workdays, and deadlines across them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from caseloop_events.contracts.calendar import CalendarYear, Duration, HolidaySpan, WorkingCalendar
from caseloop_events.contracts.clock import REGION_TIMEZONE
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data

CALENDAR = load_reference_data(default_reference_dir()).calendar


def local(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=REGION_TIMEZONE)


def end_of_local_day(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=REGION_TIMEZONE) + timedelta(days=1)


def test_the_shipped_calendar_covers_this_year_and_the_next() -> None:
    assert CALENDAR.covers(2026)
    assert CALENDAR.covers(2027)
    assert not CALENDAR.years[2026].provisional
    assert CALENDAR.years[2027].provisional, "2027 is estimated until the State Council's notice is out"


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 27), True),  # a Friday
        (date(2026, 11, 28), False),  # a Saturday
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),  # the last day of the National Day holiday
        (date(2026, 10, 10), True),  # a Saturday made a workday (调休)
        (date(2026, 9, 20), True),  # a Sunday made a workday
        (date(2026, 2, 16), False),  # Spring Festival, a Monday
        (date(2026, 2, 14), True),  # the Saturday worked before Spring Festival
        (date(2026, 1, 4), True),  # the Sunday worked after New Year
    ],
)
def test_a_day_is_a_working_day_by_weekday_holiday_and_make_up_workday(day: date, working: bool) -> None:
    assert CALENDAR.is_working_day(day) is working


def test_working_days_end_at_midnight_after_the_nth_working_day_not_counting_the_start_day() -> None:
    # Monday 2026-11-23 10:00: Tue..Fri are four working days, Mon 30th the fifth.
    due = CALENDAR.add(local(2026, 11, 23).astimezone(UTC), Duration(working_days=5))
    assert due == end_of_local_day(2026, 11, 30)
    assert due.tzinfo is UTC


def test_a_working_day_deadline_skips_the_national_day_holiday_and_counts_the_make_up_saturday() -> None:
    # Signed for on Monday 28 Sep: 29, 30 Sep; 8, 9 Oct; Sat 10 Oct (调休); then 12-16, 19-23 Oct.
    due = CALENDAR.add(local(2026, 9, 28), Duration(working_days=15))
    assert due == end_of_local_day(2026, 10, 23)
    assert CALENDAR.working_days_between(date(2026, 9, 29), date(2026, 10, 23)) == 15


def test_a_working_day_deadline_across_spring_festival_counts_both_make_up_saturdays() -> None:
    # From Friday 13 Feb: Sat 14 (worked), holiday 15-23, then 24, 25, 26, 27 and Sat 28 (worked).
    due = CALENDAR.add(local(2026, 2, 13), Duration(working_days=6))
    assert due == end_of_local_day(2026, 2, 28)


def test_a_case_started_on_a_holiday_counts_from_the_next_working_day() -> None:
    due = CALENDAR.add(local(2026, 10, 3), Duration(working_days=1))
    assert due == end_of_local_day(2026, 10, 8)


def test_hours_and_days_are_elapsed_time_through_nights_weekends_and_holidays() -> None:
    start = local(2026, 9, 30, 23)
    assert CALENDAR.add(start, Duration(hours=2)) == start + timedelta(hours=2)
    assert CALENDAR.add(start, Duration(days=7)) == start + timedelta(days=7)
    assert CALENDAR.add(start, Duration(minutes=30)) == start + timedelta(minutes=30)


def test_a_year_the_data_does_not_cover_counts_weekends_only() -> None:
    assert not CALENDAR.covers(2030)
    assert CALENDAR.is_working_day(date(2030, 10, 1))  # a Tuesday, holiday unknown
    assert not CALENDAR.is_working_day(date(2030, 10, 5))  # a Saturday


def test_a_make_up_workday_must_be_a_weekend_day_of_its_year_and_not_a_holiday() -> None:
    holidays = (HolidaySpan(name="国庆节", first=date(2026, 10, 1), last=date(2026, 10, 7)),)
    with pytest.raises(ValidationError, match="not a weekend day"):
        CalendarYear(year=2026, source="test", holidays=holidays, make_up_workdays=(date(2026, 10, 9),))
    with pytest.raises(ValidationError, match="both a holiday and a make-up workday"):
        CalendarYear(year=2026, source="test", holidays=holidays, make_up_workdays=(date(2026, 10, 3),))
    with pytest.raises(ValidationError, match="is not in 2026"):
        CalendarYear(year=2026, source="test", holidays=holidays, make_up_workdays=(date(2027, 10, 9),))
    with pytest.raises(ValidationError, match="ends"):
        HolidaySpan(name="x", first=date(2026, 10, 7), last=date(2026, 10, 1))


def test_a_calendar_of_given_years_uses_exactly_those_days() -> None:
    year = CalendarYear(
        year=2026,
        source="test",
        holidays=(HolidaySpan(name="x", first=date(2026, 12, 1), last=date(2026, 12, 1)),),
        make_up_workdays=(date(2026, 12, 5),),
    )
    calendar = WorkingCalendar([year])
    # From Monday 30 Nov: Tue 1 Dec is a holiday, Wed 2, Thu 3, Fri 4, Sat 5 (worked).
    assert calendar.add(local(2026, 11, 30), Duration(working_days=4)) == end_of_local_day(2026, 12, 5)


def test_a_duration_has_exactly_one_unit() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Duration(hours=1, days=1)
    with pytest.raises(ValidationError, match="exactly one"):
        Duration()
    assert str(Duration(working_days=15)) == "15 working days"
