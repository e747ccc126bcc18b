"""The daily report (日报告), computed from the events alone. Pure.

A day is a calendar day in region time. The report counts the events that occurred that day;
each case is taken as it stood at the end of that day (its town and unit then), so events that
occur later — new cases, later closures, re-assignments — never change the report of a past day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from caseloop_events.contracts.dispatch import CaseReturned, ExtensionRequested
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.intake import CaseAccepted, CaseLinkedAsDuplicate, CaseRejected, CasesMerged
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseUrged,
    ClockKind,
    ClockStopped,
    ExtensionDecided,
    SupervisionNoticeIssued,
)
from caseloop_supervision.domain.decisions import CLOSING_RATINGS
from caseloop_supervision.domain.model import SupervisedCase


@dataclass
class DailyReport:
    date: date
    town_code: str | None
    unit_id: str | None
    #: Cases accepted that day (a case accepted again after an unmerge is not new).
    new_cases: int = 0
    rejected: int = 0
    #: Reports linked as duplicates of an open case, and cases merged into another (重复件).
    repeat_cases: int = 0
    closed: int = 0
    #: Closed cases whose last handling clock stopped by its deadline.
    closed_on_time: int = 0
    #: Closed cases that had a handling clock: the on-time rate's denominator.
    closed_with_deadline: int = 0
    #: Cases that went past a deadline that day (their first ``overdue`` notice of the day).
    overdue: int = 0
    notices: dict[str, int] = field(default_factory=dict)
    urgings: int = 0
    returns: int = 0
    reopened: int = 0
    extensions_requested: int = 0
    extensions_approved: int = 0
    evaluations: int = 0
    satisfied: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return None if self.closed_with_deadline == 0 else self.closed_on_time / self.closed_with_deadline

    @property
    def satisfaction_rate(self) -> float | None:
        return None if self.evaluations == 0 else self.satisfied / self.evaluations


def daily_report(
    day: date,
    start: datetime,
    end: datetime,
    cases: Iterable[tuple[SupervisedCase, list[Envelope]]],
    *,
    town_code: str | None = None,
    unit_id: str | None = None,
    overdue_rung: str = "overdue",
) -> DailyReport:
    """The report for ``day`` (``start`` ≤ occurred_at < ``end``), from each case folded to ``end``
    with its events; ``town_code`` / ``unit_id`` keep the cases in that town / with that lead unit.
    ``overdue_rung`` is the ladder's rung reached at the deadline."""
    report = DailyReport(date=day, town_code=town_code, unit_id=unit_id)
    notices: Counter[str] = Counter()
    for case, events in cases:
        if case.status is None:
            continue  # a region's stream, not a case
        if town_code is not None and case.town_code != town_code:
            continue
        if unit_id is not None and case.unit_id != unit_id:
            continue
        went_overdue = False
        accepted_before = False
        for event in events:
            if event.occurred_at >= end:
                break
            on_the_day = event.occurred_at >= start
            match event.payload:
                case CaseAccepted():
                    report.new_cases += on_the_day and not accepted_before
                    accepted_before = True
                case CaseRejected():
                    report.rejected += on_the_day
                case CaseLinkedAsDuplicate() | CasesMerged():
                    report.repeat_cases += on_the_day
                case CaseReturned():
                    report.returns += on_the_day
                case CaseReopened():
                    report.reopened += on_the_day
                case ExtensionRequested():
                    report.extensions_requested += on_the_day
                case ExtensionDecided() as decided:
                    report.extensions_approved += on_the_day and decided.approved
                case CaseUrged():
                    report.urgings += on_the_day
                case CaseEvaluated() as evaluated if on_the_day:
                    report.evaluations += 1
                    report.satisfied += evaluated.rating in CLOSING_RATINGS
                case SupervisionNoticeIssued() as notice if start <= notice.reached_at < end:
                    # Counted on the day the rung was reached, even when the timer issued it later.
                    notices[notice.rung] += 1
                    went_overdue = went_overdue or notice.rung == overdue_rung
                case CaseClosed() if on_the_day:
                    report.closed += 1
                    handling = _last_handling_stop(events, end)
                    if handling is not None:
                        report.closed_with_deadline += 1
                        report.closed_on_time += handling.on_time
                case _:
                    pass
        report.overdue += went_overdue
    report.notices = dict(sorted(notices.items()))
    return report


def _last_handling_stop(events: list[Envelope], end: datetime) -> ClockStopped | None:
    stops = [
        e.payload
        for e in events
        if e.occurred_at < end and isinstance(e.payload, ClockStopped) and e.payload.clock is ClockKind.HANDLING
    ]
    # The stop at the result reported, not the one a closure makes of a clock already stopped.
    for stop in reversed(stops):
        if stop.reason == "result_reported":
            return stop
    return stops[-1] if stops else None
