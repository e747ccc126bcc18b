"""Time is injected (DESIGN.md §3): domain code asks a clock, never ``datetime.now()``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock, for running services."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        self._now += by


#: The region's civil time (China has no daylight saving): case numbers and days use it.
REGION_TIMEZONE = timezone(timedelta(hours=8), "CST")
