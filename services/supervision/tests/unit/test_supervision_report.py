"""The daily report (日报告), from events alone: what each figure counts, and that later events never move it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import REGION_TIMEZONE
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
)
from caseloop_events.contracts.envelope import Envelope, EventPayload
from caseloop_events.contracts.intake import CaseAccepted, CaseLinkedAsDuplicate, CaseLocation
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseVerified,
    ClockKind,
    ClockStopped,
    ClosureReason,
    Rating,
    SupervisionNoticeIssued,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fixtures import causal_chain
from caseloop_supervision.domain.model import fold
from caseloop_supervision.domain.report import daily_report

DAY = date(2026, 11, 26)
START = datetime(2026, 11, 26, tzinfo=REGION_TIMEZONE)
END = START + timedelta(days=1)


def location(town: str) -> CaseLocation:
    return CaseLocation(grid_code=f"{town}0010101", village_code=f"{town}001", town_code=town, district_code=town[:6])


def accepted(town: str = "330110001") -> CaseAccepted:
    return CaseAccepted(
        case_no="CL1", source_system="s", external_id=str(uuid.uuid4()), title="t", description="d",
        location=location(town), accepted_at=START,
    )  # fmt: skip


JUDGED = CaseJudged(
    category="sanitation",
    risk_level=3,
    handling_level=HandlingLevel.TOWN,
    sla_tier=SlaTierName.GENERAL,
    judged_by=JudgedBy.RULES,
    confidence=0.9,
)


def assigned(unit: str = "U-1") -> CaseAssigned:
    return CaseAssigned(
        unit_id=unit, unit_name=unit, town_code="330110001", route=AssignmentRoute.RESPONSIBILITY_LIST, reason="r"
    )


def case(start: datetime, *payloads: EventPayload, step: timedelta = timedelta(hours=1)) -> list[Envelope]:
    return causal_chain(uuid.uuid4(), payloads, start, step)


def report_of(cases: list[list[Envelope]], **filters: str) -> dict[str, object]:
    folded = []
    for events in cases:
        ordered = causal_order(events)
        folded.append((fold(ordered[0].case_id, [e for e in ordered if e.occurred_at < END]), ordered))
    report = daily_report(DAY, START, END, folded, **filters)
    return {**vars(report), "on_time_rate": report.on_time_rate, "satisfaction_rate": report.satisfaction_rate}


def closed_on_the_day(on_time: bool, rating: Rating) -> list[Envelope]:
    return case(
        START + timedelta(hours=1),
        accepted(),
        JUDGED,
        assigned(),
        CaseAcknowledged(unit_id="U-1", acknowledged_by="w"),
        CaseResultReported(unit_id="U-1", reported_by="w", summary="s"),
        ClockStopped(
            clock=ClockKind.HANDLING, reason="result_reported", stopped_at=START, due_at=START, on_time=on_time
        ),
        CaseVerified(verified_by="v"),
        CaseEvaluated(rating=rating),
        CaseClosed(reason=ClosureReason.EVALUATED),
        step=timedelta(minutes=30),
    )


def test_the_report_counts_the_days_new_closed_on_time_overdue_notices_returns_repeats_and_satisfaction() -> None:
    overdue_notice = SupervisionNoticeIssued(
        rung="overdue", clock=ClockKind.HANDLING, due_at=START, reached_at=START, level="village",
        addressed_to="330110001001",
    )  # fmt: skip
    returned = CaseReturned(unit_id="U-1", returned_by="w", reason="r")
    report = accepted().model_dump(exclude={"accepted_at"})
    duplicate = CaseLinkedAsDuplicate.model_validate(
        {**report, "original_case_id": uuid.uuid4(), "original_case_no": "CL0", "similarity": 0.9, "reason": "r"}
    )
    cases = [
        closed_on_the_day(on_time=True, rating=Rating.SATISFIED),
        closed_on_the_day(on_time=False, rating=Rating.UNSATISFIED),
        case(START + timedelta(hours=2), accepted(), JUDGED, assigned(), returned, overdue_notice),
        case(START + timedelta(hours=3), duplicate),
        # Accepted the day before: not new, but its closure today counts.
        case(
            START - timedelta(hours=20),
            accepted(),
            JUDGED,
            CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE),
            step=timedelta(hours=12),
        ),
    ]
    report = report_of(cases)
    assert report["new_cases"] == 3
    assert report["repeat_cases"] == 1
    assert (report["closed"], report["closed_on_time"], report["closed_with_deadline"]) == (3, 1, 2)
    assert report["on_time_rate"] == 0.5
    assert report["overdue"] == 1
    assert report["notices"] == {"overdue": 1}
    assert report["returns"] == 1
    assert (report["evaluations"], report["satisfied"], report["satisfaction_rate"]) == (2, 1, 0.5)


def test_events_after_the_day_change_nothing_in_its_report() -> None:
    day_cases = [closed_on_the_day(on_time=True, rating=Rating.SATISFIED)]
    before = report_of(day_cases)
    # The next morning: a new case, and the day's case re-assigned (its unit changes).
    later = [*day_cases[0], *case(END + timedelta(hours=1), assigned("U-9"))]
    later[-1] = later[-1].model_copy(update={"case_id": day_cases[0][0].case_id})
    after = report_of([later, case(END + timedelta(hours=2), accepted(), JUDGED)])
    assert after == before
    assert report_of([later], unit_id="U-1") == {**before, "unit_id": "U-1"}, "the unit as it was at the end of the day"


def test_a_report_by_town_keeps_only_that_towns_cases() -> None:
    here = case(START + timedelta(hours=1), accepted("330110001"))
    there = case(START + timedelta(hours=1), accepted("330110002"))
    assert report_of([here, there], town_code="330110002")["new_cases"] == 1
    assert report_of([here, there])["new_cases"] == 2


def test_an_empty_day_has_no_rates() -> None:
    report = report_of([case(START - timedelta(days=3), accepted())])
    assert (report["new_cases"], report["on_time_rate"], report["satisfaction_rate"]) == (0, None, None)
    assert START.astimezone(UTC).hour == 16, "a region day starts at 16:00 UTC the day before"
