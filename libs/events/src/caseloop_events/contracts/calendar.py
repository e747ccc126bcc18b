"""The working-day calendar and deadline arithmetic: how long "15 working days" is, as data.

Chinese public holidays move every year and are partly paid for with make-up workdays (调休) on
weekends, so the calendar cannot be computed: each year's holidays and make-up workdays are data
(``deploy/reference/calendar.json``). A year the data does not cover is counted with weekends
only, and :meth:`WorkingCalendar.covers` lets the service warn about it.

Pure: no clock is read here; every function is given the instant it counts from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from caseloop_events.contracts.clock import REGION_TIMEZONE

__all__ = ["CalendarYear", "Duration", "HolidaySpan", "WorkingCalendar"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Duration(_Frozen):
    """A length of time in exactly one unit: minutes, hours, calendar days or working days.

    Minutes, hours and days are elapsed time (a 2-hour emergency runs through the night);
    working days follow the calendar and end at midnight, region time.
    """

    minutes: Annotated[int, Field(gt=0)] | None = None
    hours: Annotated[int, Field(gt=0)] | None = None
    days: Annotated[int, Field(gt=0)] | None = None
    working_days: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _check_exactly_one_unit(self) -> Duration:
        units = [self.minutes, self.hours, self.days, self.working_days]
        if sum(value is not None for value in units) != 1:
            raise ValueError("set exactly one of minutes, hours, days, working_days")
        return self

    @property
    def elapsed(self) -> timedelta | None:
        """The length as elapsed time, or None for working days (the calendar decides)."""
        if self.minutes is not None:
            return timedelta(minutes=self.minutes)
        if self.hours is not None:
            return timedelta(hours=self.hours)
        if self.days is not None:
            return timedelta(days=self.days)
        return None

    def __str__(self) -> str:
        for unit in ("minutes", "hours", "days", "working_days"):
            value = getattr(self, unit)
            if value is not None:
                return f"{value} {unit.replace('_', ' ')}"
        raise AssertionError("a Duration has one unit")


class HolidaySpan(_Frozen):
    """Consecutive days off (放假), weekends inside the span included."""

    name: str
    first: date
    last: date

    @model_validator(mode="after")
    def _check_order(self) -> HolidaySpan:
        if self.last < self.first:
            raise ValueError(f"holiday {self.name!r} ends ({self.last}) before it starts ({self.first})")
        return self

    def days(self) -> Iterable[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)


class CalendarYear(_Frozen):
    """One year's public holidays and make-up workdays, and where they come from."""

    year: int
    source: str = Field(description="the notice the dates are taken from")
    provisional: bool = Field(
        default=False, description="true until the official notice is out: dates estimated from the statutory holidays"
    )
    holidays: tuple[HolidaySpan, ...]
    make_up_workdays: tuple[date, ...] = ()

    @model_validator(mode="after")
    def _check_dates(self) -> CalendarYear:
        days_off = {day for span in self.holidays for day in span.days()}
        for day in (*days_off, *self.make_up_workdays):
            # A holiday may start in the last days of the year before (New Year's Eve); allow one week.
            if not (date(self.year - 1, 12, 24) <= day <= date(self.year, 12, 31)):
                raise ValueError(f"{day} is not in {self.year}")
        for day in self.make_up_workdays:
            if day.weekday() < 5:
                raise ValueError(f"make-up workday {day} is not a weekend day")
            if day in days_off:
                raise ValueError(f"{day} is both a holiday and a make-up workday")
        return self


class WorkingCalendar:
    """Which days are working days, and when a deadline counted in working days falls."""

    def __init__(self, years: Iterable[CalendarYear], timezone: tzinfo = REGION_TIMEZONE) -> None:
        self.years: Mapping[int, CalendarYear] = {year.year: year for year in years}
        self.timezone = timezone
        self._days_off = {day for year in self.years.values() for span in year.holidays for day in span.days()}
        self._make_up = {day for year in self.years.values() for day in year.make_up_workdays}

    def covers(self, year: int) -> bool:
        """Whether the data names this year's holidays (otherwise weekends alone count)."""
        return year in self.years

    def is_working_day(self, day: date) -> bool:
        if day in self._make_up:
            return True
        if day in self._days_off:
            return False
        return day.weekday() < 5

    def add(self, start: datetime, duration: Duration) -> datetime:
        """When a clock of ``duration`` started at ``start`` runs out (in UTC, as ``start`` is given).

        ``n`` working days end at midnight after the n-th working day following the start's day,
        region time: the day the clock starts on is not counted, whatever the hour (a case signed
        for on Friday evening has all of the next working days, as a case signed for in the morning).
        """
        elapsed = duration.elapsed
        if elapsed is not None:
            return start + elapsed
        assert duration.working_days is not None
        day = start.astimezone(self.timezone).date()
        counted = 0
        while counted < duration.working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end_of_day = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.timezone)
        return end_of_day.astimezone(start.tzinfo)

    def working_days_between(self, first: date, last: date) -> int:
        """How many working days lie in ``first`` … ``last``, both included."""
        count, day = 0, first
        while day <= last:
            count += self.is_working_day(day)
            day += timedelta(days=1)
        return count
