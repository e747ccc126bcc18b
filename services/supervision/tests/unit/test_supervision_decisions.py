"""Given a case's events, when supervision is commanded, then these events (pure, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.causal import causal_order
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseVerificationFailed,
    CaseVerified,
    Rating,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.envelope import ActorRole, Envelope, EventPayload, Producer
from caseloop_events.testing import causal_chain
from caseloop_supervision.domain.decisions import (
    EvaluateHandling,
    NotAwaitingEvaluation,
    NotAwaitingVerification,
    VerifyResult,
    evaluate,
    verify,
)
from caseloop_supervision.domain.model import HolderKind, SupervisedCase, fold

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
CASE = uuid.uuid4()


def chain(*payloads: EventPayload) -> list[Envelope]:
    """Events of one case, each caused by the one before, a minute apart."""
    return causal_chain(CASE, payloads, T0, timedelta(minutes=1))


ACCEPTED = CaseAccepted(
    case_no="CL202611270000001",
    source_system="hotline-12345",
    external_id="e1",
    title="垃圾",
    description="垃圾堆积",
    location=CaseLocation(
        grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
    ),
    accepted_at=T0,
)
JUDGED = CaseJudged(
    category="sanitation",
    risk_level=3,
    handling_level=HandlingLevel.TOWN,
    sla_tier=SlaTierName.GENERAL,
    judged_by=JudgedBy.RULES,
    confidence=0.8,
)
ASSIGNED = CaseAssigned(
    unit_id="U-1", unit_name="城管", town_code="330110001", route=AssignmentRoute.RESPONSIBILITY_LIST, reason="r"
)
HANDLED = (
    ACCEPTED,
    JUDGED,
    ASSIGNED,
    CaseAcknowledged(unit_id="U-1", acknowledged_by="h"),
    CaseResultReported(unit_id="U-1", reported_by="h", summary="done"),
)


def a_case_with(*payloads: EventPayload) -> SupervisedCase:
    return fold(CASE, chain(*payloads))


def verify_command(passed: bool) -> VerifyResult:
    return VerifyResult(
        passed=passed, by="supervisor-1", note="", now=T0 + timedelta(hours=1), correlation_id=uuid.uuid4()
    )


def evaluate_command(rating: Rating) -> EvaluateHandling:
    return EvaluateHandling(rating=rating, comment="", now=T0 + timedelta(hours=2), correlation_id=uuid.uuid4())


def test_a_reported_result_verified_as_done_is_verified_by_the_supervisor() -> None:
    case = a_case_with(*HANDLED)
    [event] = verify(case, verify_command(passed=True))
    assert isinstance(event.payload, CaseVerified)
    assert event.actor.role is ActorRole.SUPERVISOR
    assert case.status_event is not None
    assert event.causation_id == case.status_event.event_id


def test_a_failed_verification_puts_the_case_back_with_the_unit() -> None:
    case = a_case_with(*HANDLED)
    [failed] = verify(case, verify_command(passed=False))
    assert isinstance(failed.payload, CaseVerificationFailed)
    reworked = fold(CASE, [*chain(*HANDLED), failed])
    assert reworked.status is CaseStatus.ACKNOWLEDGED
    assert reworked.holder.kind is HolderKind.UNIT


def test_a_case_without_a_reported_result_cannot_be_verified() -> None:
    with pytest.raises(NotAwaitingVerification):
        verify(a_case_with(ACCEPTED, JUDGED, ASSIGNED), verify_command(passed=True))


def test_a_satisfied_evaluation_closes_the_case_as_its_consequence() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    evaluated, closed = evaluate(fold(CASE, events), evaluate_command(Rating.SATISFIED))
    assert isinstance(evaluated.payload, CaseEvaluated)
    assert isinstance(closed.payload, CaseClosed)
    assert closed.causation_id == evaluated.event_id
    assert closed.producer is Producer.SUPERVISION
    assert fold(CASE, [*events, evaluated, closed]).status is CaseStatus.CLOSED


def test_an_unsatisfied_evaluation_does_not_close_the_case() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    [evaluated] = evaluate(fold(CASE, events), evaluate_command(Rating.UNSATISFIED))
    unsatisfied = fold(CASE, [*events, evaluated])
    assert unsatisfied.status is CaseStatus.VERIFIED
    assert unsatisfied.holder.kind is HolderKind.SERVICE, "the citizen has had their say"


def test_an_unverified_case_cannot_be_evaluated() -> None:
    with pytest.raises(NotAwaitingEvaluation):
        evaluate(a_case_with(*HANDLED), evaluate_command(Rating.SATISFIED))


def test_a_case_cannot_be_evaluated_twice() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"), CaseEvaluated(rating=Rating.UNSATISFIED))
    with pytest.raises(NotAwaitingEvaluation):
        evaluate(fold(CASE, events), evaluate_command(Rating.SATISFIED))


def test_the_status_is_the_same_whatever_order_the_topics_delivered_the_events_in() -> None:
    events = chain(*HANDLED)
    delivered_backwards = list(reversed(events))
    assert fold(CASE, causal_order(delivered_backwards)) == fold(CASE, events)
    assert fold(CASE, events).status is CaseStatus.RESULT_REPORTED
