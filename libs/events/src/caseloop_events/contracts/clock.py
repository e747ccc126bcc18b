"""Time is injected (DESIGN.md §3): domain code asks a clock, never ``datetime.now()``."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


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


class ShiftedClock:
    """The wall clock shifted by an offset read from a file: how end-to-end tests move the time of
    real service processes forward (a 15-working-day deadline passes in seconds).

    The file holds the offset in seconds (a float); it is re-read whenever it changes, and a
    missing or unreadable file means no shift. Time never goes backwards: a smaller offset than
    one already applied is ignored, so timers and deadlines stay consistent.
    """

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self._stamp: tuple[int, int] | None = None
        self._offset = timedelta(0)
        self._last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        self._read_offset()
        now = max(datetime.now(UTC) + self._offset, self._last)
        self._last = now
        return now

    def _read_offset(self) -> None:
        try:
            stat = self.offset_file.stat()
        except OSError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            offset = timedelta(seconds=float(self.offset_file.read_text().strip() or 0))
        except (OSError, ValueError):
            return  # being written: the next call reads it whole
        self._stamp = stamp
        self._offset = max(self._offset, offset)


#: The environment variable that makes a service run on a :class:`ShiftedClock` (tests only).
CLOCK_OFFSET_FILE_ENV = "CASELOOP_CLOCK_OFFSET_FILE"


def clock_from_environment() -> Clock:
    """The system clock, unless ``CASELOOP_CLOCK_OFFSET_FILE`` names an offset file (tests)."""
    offset_file = os.environ.get(CLOCK_OFFSET_FILE_ENV)
    if not offset_file:
        return SystemClock()
    log.warning(
        "%s=%s: this service's clock is shifted by the offset in that file; for tests only",
        CLOCK_OFFSET_FILE_ENV,
        offset_file,
    )
    return ShiftedClock(Path(offset_file))


#: The region's civil time (China has no daylight saving): case numbers and days use it.
REGION_TIMEZONE = timezone(timedelta(hours=8), "CST")
