"""Assignment, pure: given a case's events, when dispatch routes it or a unit answers, then these events."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_dispatch.domain.model import (
    AcknowledgeCase,
    DispatchCase,
    NotAcknowledged,
    NotAssignedToThisUnit,
    NotAwaitingAcknowledgement,
    ReportResult,
    acknowledge,
    fold,
    report_result,
    route,
)
from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    Producer,
    deterministic_id,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import CaseNotFound
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import CaseClosed, CaseVerificationFailed, ClosureReason
from caseloop_events.contracts.triage import CaseJudged, JudgedBy

REFERENCE: ReferenceData = load_reference_data(default_reference_dir())
GRID = "3301100010010101"
TOWN = GRID[:9]
REPORTED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = REPORTED_AT + timedelta(hours=1)
CASE_ID = uuid.UUID("0b1e7f4c-3a52-4a8e-9a61-9d2f6f3b1c01")
SUPERVISOR = Actor(id="li.na", role=ActorRole.SUPERVISOR)


def accepted() -> Envelope:
    payload = CaseAccepted(
        case_no="CL202603020000001",
        source_system="hotline-12345",
        external_id="HL-1",
        title="路面塌陷",
        description="人行道塌了一个坑",
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=TOWN, district_code=GRID[:6]),
        accepted_at=REPORTED_AT,
    )
    return new_event(
        payload,
        case_id=CASE_ID,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=REPORTED_AT,
        correlation_id=uuid.uuid4(),
        event_id=deterministic_id(CASE_ID, "accepted"),
    )


def judged(cause: Envelope, category: str) -> Envelope:
    payload = CaseJudged(
        category=category,
        risk_level=3,
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=JudgedBy.RULES,
        confidence=0.9,
    )
    return event_caused_by(
        cause,
        payload,
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=cause.occurred_at + timedelta(minutes=1),
        decision="judged",
    )


def given(*events: Envelope) -> DispatchCase:
    return fold(CASE_ID, causal_order(events))


def assigned_case(category: str = "road_damage") -> list[Envelope]:
    """A road-damage case, accepted, judged and assigned."""
    accepted_event = accepted()
    judged_event = judged(accepted_event, category)
    assignment = route(given(accepted_event, judged_event), REFERENCE, LATER)
    assert assignment is not None
    return [accepted_event, judged_event, assignment]


def acknowledged_case() -> list[Envelope]:
    events = assigned_case()
    return [*events, acknowledge(given(*events), acknowledgement_by(unit_of(events)))]


def unit_of(events: list[Envelope]) -> str:
    assignment = given(*events).assignment
    assert assignment is not None
    return assignment.unit_id


def acknowledgement_by(unit_id: str) -> AcknowledgeCase:
    return AcknowledgeCase(case_id=CASE_ID, unit_id=unit_id, by="wang.wei", now=LATER)


def result_by(unit_id: str, summary: str = "坑已填平") -> ReportResult:
    return ReportResult(
        case_id=CASE_ID,
        unit_id=unit_id,
        by="wang.wei",
        summary=summary,
        evidence=("https://e.example/1.jpg",),
        now=LATER,
    )


def test_a_judged_case_whose_category_a_department_answers_in_its_town_is_routed_by_the_responsibility_list() -> None:
    accepted_event = accepted()
    judged_event = judged(accepted_event, "road_damage")

    assignment = route(given(accepted_event, judged_event), REFERENCE, LATER)

    assert assignment is not None
    assert isinstance(assignment.payload, CaseAssigned)
    assert assignment.payload.unit_id == REFERENCE.units_answering("road_damage", TOWN)[0].unit_id == "U-TRANSPORT"
    assert assignment.payload.route is AssignmentRoute.RESPONSIBILITY_LIST
    assert "responsibility list" in assignment.payload.reason
    assert "U-TRANSPORT" in assignment.payload.reason
    assert assignment.payload.town_code == TOWN
    assert assignment.causation_id == judged_event.event_id
    assert assignment.correlation_id == judged_event.correlation_id
    assert assignment.actor == Actor.system(Producer.DISPATCH)


def test_a_category_no_department_answers_goes_to_the_town_government() -> None:
    accepted_event = accepted()

    assignment = route(given(accepted_event, judged(accepted_event, "community_governance")), REFERENCE, LATER)

    assert assignment is not None
    assert isinstance(assignment.payload, CaseAssigned)
    assert assignment.payload.unit_id == REFERENCE.town_government(TOWN).unit_id == f"U-TOWN-{TOWN}"
    assert assignment.payload.route is AssignmentRoute.TOWN_FALLBACK
    assert REFERENCE.town_government(TOWN).name in assignment.payload.reason


def test_the_assignment_is_the_same_whichever_of_accepted_and_judged_arrives_first() -> None:
    accepted_event = accepted()
    judged_event = judged(accepted_event, "road_damage")

    accepted_first = assignment_on_arrival(accepted_event, judged_event, now=LATER)
    judged_first = assignment_on_arrival(judged_event, accepted_event, now=LATER + timedelta(minutes=5))

    assert isinstance(accepted_first.payload, CaseAssigned)
    assert isinstance(judged_first.payload, CaseAssigned)
    assert accepted_first.payload.unit_id == judged_first.payload.unit_id == "U-TRANSPORT"
    assert accepted_first.event_id == judged_first.event_id == deterministic_id(judged_event.event_id, "assigned")


def assignment_on_arrival(*arriving: Envelope, now: datetime) -> Envelope:
    """What a consumer decides as the events arrive one by one: the first assignment due."""
    recorded: list[Envelope] = []
    for event in arriving:
        recorded.append(event)
        assignment = route(given(*recorded), REFERENCE, now)
        if assignment is not None:
            return assignment
    raise AssertionError("no assignment was due")


def test_an_assigned_case_is_not_assigned_again() -> None:
    assert route(given(*assigned_case()), REFERENCE, LATER) is None


def test_a_closed_case_is_not_assigned() -> None:
    accepted_event = accepted()
    closed = event_caused_by(
        accepted_event,
        CaseClosed(reason=ClosureReason.EVALUATED),
        actor=SUPERVISOR,
        occurred_at=REPORTED_AT,
        decision="closed",
    )

    assert route(given(accepted_event, closed, judged(accepted_event, "road_damage")), REFERENCE, LATER) is None


def test_the_assigned_unit_acknowledges_in_answer_to_the_assignment() -> None:
    events = assigned_case()
    command = replace(acknowledgement_by("U-TRANSPORT"), subject="key-of-the-transport-bureau")

    acknowledgement = acknowledge(given(*events), command)

    assert isinstance(acknowledgement.payload, CaseAcknowledged)
    assert acknowledgement.payload.acknowledged_by == "wang.wei"
    assert acknowledgement.causation_id == events[-1].event_id
    assert acknowledgement.correlation_id == command.correlation_id, "the request that asked for it"
    assert acknowledgement.actor == Actor(
        id="wang.wei", role=ActorRole.UNIT, unit_id="U-TRANSPORT", subject="key-of-the-transport-bureau"
    ), "the authenticated caller named explicitly, as the command carries it"
    assert given(*events, acknowledgement).status is CaseStatus.ACKNOWLEDGED


def test_acknowledging_for_another_unit_is_refused() -> None:
    with pytest.raises(NotAssignedToThisUnit, match="U-TRANSPORT"):
        acknowledge(given(*assigned_case()), acknowledgement_by("U-POLICE"))


def test_acknowledging_twice_is_refused() -> None:
    with pytest.raises(NotAwaitingAcknowledgement):
        acknowledge(given(*acknowledged_case()), acknowledgement_by("U-TRANSPORT"))


def test_acknowledging_a_case_dispatch_never_heard_of_is_not_found() -> None:
    with pytest.raises(CaseNotFound):
        acknowledge(given(), acknowledgement_by("U-TRANSPORT"))


def test_a_result_before_acknowledgement_is_refused() -> None:
    with pytest.raises(NotAcknowledged):
        report_result(given(*assigned_case()), result_by("U-TRANSPORT"))


def test_a_result_from_another_unit_is_refused() -> None:
    with pytest.raises(NotAssignedToThisUnit):
        report_result(given(*acknowledged_case()), result_by("U-POLICE"))


def test_a_result_answers_the_acknowledgement() -> None:
    events = acknowledged_case()

    result = report_result(given(*events), result_by("U-TRANSPORT"))

    assert isinstance(result.payload, CaseResultReported)
    assert result.payload.evidence == ("https://e.example/1.jpg",)
    assert result.causation_id == events[-1].event_id
    assert given(*events, result).status is CaseStatus.RESULT_REPORTED


def test_after_a_verification_failure_the_unit_reports_again() -> None:
    events = acknowledged_case()
    first_result = report_result(given(*events), result_by("U-TRANSPORT", "坑已填平"))
    failed = event_caused_by(
        first_result,
        CaseVerificationFailed(verified_by="li.na", note="坑还在"),
        actor=SUPERVISOR,
        occurred_at=LATER,
        decision="verification_failed",
    )
    with pytest.raises(NotAcknowledged):
        report_result(given(*events, first_result), result_by("U-TRANSPORT"))

    second_result = report_result(given(*events, first_result, failed), result_by("U-TRANSPORT", "重新铺设路面"))

    assert isinstance(second_result.payload, CaseResultReported)
    assert second_result.payload.summary == "重新铺设路面"
    assert second_result.causation_id == failed.event_id
