"""Given a case's events, when supervision is commanded (or its clock ticks), then these events (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.envelope import ActorRole, Envelope, EventPayload, Producer, deterministic_id
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseVerificationFailed,
    CaseVerified,
    ClosureReason,
    FeedbackDelivered,
    FeedbackFailed,
    Rating,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fixtures import causal_chain
from caseloop_supervision.domain.decisions import (
    EvaluateHandling,
    NotAwaitingEvaluation,
    NotAwaitingVerification,
    VerifyResult,
    close_if_evaluation_overdue,
    close_with_original,
    evaluate,
    verify,
)
from caseloop_supervision.domain.feedback import AttemptOutcome, FeedbackPolicy, attempt_recorded, feedback_for
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
        case_id=CASE,
        passed=passed,
        by="supervisor-1",
        note="",
        now=T0 + timedelta(hours=1),
        correlation_id=uuid.uuid4(),
    )


def evaluate_command(rating: Rating) -> EvaluateHandling:
    return EvaluateHandling(
        case_id=CASE, rating=rating, comment="", now=T0 + timedelta(hours=2), correlation_id=uuid.uuid4()
    )


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


def test_an_unsatisfied_evaluation_reopens_the_case_as_its_consequence() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    command = EvaluateHandling(
        case_id=CASE,
        rating=Rating.UNSATISFIED,
        comment="still smells",
        now=T0 + timedelta(hours=2),
        correlation_id=uuid.uuid4(),
    )
    evaluated, reopened = evaluate(fold(CASE, events), command)
    assert isinstance(reopened.payload, CaseReopened)
    assert (reopened.payload.reason, reopened.payload.reopen_count) == ("still smells", 1)
    assert reopened.causation_id == evaluated.event_id
    assert reopened.event_id == deterministic_id(evaluated.event_id, "reopened")
    case = fold(CASE, [*events, evaluated, reopened])
    assert case.status is CaseStatus.REOPENED
    assert case.holder.kind is HolderKind.SERVICE
    assert case.holder.id == "dispatch"


def test_an_unsatisfied_evaluation_without_a_comment_says_why_it_reopened() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    _, reopened = evaluate(fold(CASE, events), evaluate_command(Rating.UNSATISFIED))
    assert isinstance(reopened.payload, CaseReopened)
    assert reopened.payload.reason == "unsatisfied evaluation"


def test_a_reopened_case_handled_again_can_be_evaluated_again_and_counts_its_reopenings() -> None:
    once_reopened = (
        *HANDLED,
        CaseVerified(verified_by="s"),
        CaseEvaluated(rating=Rating.UNSATISFIED),
        CaseReopened(reason="unsatisfied evaluation", reopen_count=1),
        ASSIGNED,
        *HANDLED[3:],
        CaseVerified(verified_by="s"),
    )
    case = a_case_with(*once_reopened)
    _, reopened = evaluate(case, evaluate_command(Rating.UNSATISFIED))
    assert isinstance(reopened.payload, CaseReopened)
    assert reopened.payload.reopen_count == 2
    _, closed = evaluate(case, evaluate_command(Rating.SATISFIED))
    assert isinstance(closed.payload, CaseClosed)


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


WINDOW = timedelta(hours=72)


def test_a_verified_case_not_evaluated_within_the_window_closes_caused_by_its_verification() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    verified = events[-1]
    case = fold(CASE, events)
    assert close_if_evaluation_overdue(case, verified.occurred_at + WINDOW - timedelta(seconds=1), WINDOW) == []
    [closed] = close_if_evaluation_overdue(case, verified.occurred_at + WINDOW, WINDOW)
    assert isinstance(closed.payload, CaseClosed)
    assert closed.payload.reason is ClosureReason.NO_EVALUATION_IN_TIME
    assert closed.causation_id == verified.event_id
    assert closed.event_id == deterministic_id(verified.event_id, "closed-no-evaluation-in-time")
    assert closed.occurred_at == verified.occurred_at + WINDOW


def test_an_evaluated_or_unverified_case_is_never_closed_by_the_timer() -> None:
    late = T0 + 10 * WINDOW
    evaluated = a_case_with(*HANDLED, CaseVerified(verified_by="s"), CaseEvaluated(rating=Rating.UNSATISFIED))
    assert close_if_evaluation_overdue(evaluated, late, WINDOW) == []
    assert close_if_evaluation_overdue(a_case_with(*HANDLED), late, WINDOW) == []


def test_the_evaluation_window_of_a_reopened_case_counts_from_its_new_verification() -> None:
    events = chain(
        *HANDLED,
        CaseVerified(verified_by="s"),
        CaseEvaluated(rating=Rating.UNSATISFIED),
        CaseReopened(reason="r", reopen_count=1),
        ASSIGNED,
        *HANDLED[3:],
    )
    reverified = [*events, *causal_chain(CASE, [CaseVerified(verified_by="s")], T0 + WINDOW, timedelta(0))]
    case = fold(CASE, reverified)
    assert close_if_evaluation_overdue(case, T0 + WINDOW + timedelta(hours=1), WINDOW) == []
    [closed] = close_if_evaluation_overdue(case, T0 + 2 * WINDOW, WINDOW)
    assert closed.causation_id == reverified[-1].event_id


ORIGINAL_CASE = uuid.uuid4()
FOLLOWER = uuid.uuid4()


def original_closure() -> Envelope:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    _, closed = evaluate(fold(CASE, events), evaluate_command(Rating.SATISFIED))
    return closed


def a_follower_with(*payloads: EventPayload) -> SupervisedCase:
    return fold(FOLLOWER, causal_chain(FOLLOWER, payloads, T0, timedelta(minutes=1)))


def linked_to(original: uuid.UUID) -> CaseLinkedAsDuplicate:
    report = ACCEPTED.model_dump(exclude={"accepted_at"})
    return CaseLinkedAsDuplicate(
        **report, original_case_id=original, original_case_no="CL1", similarity=0.9, reason="same"
    )


def test_a_duplicate_closes_with_its_original_caused_by_the_original_closure() -> None:
    closure = original_closure()
    follower = a_follower_with(linked_to(CASE))
    now = T0 + timedelta(days=1)
    [closed] = close_with_original(follower, closure, now)
    assert closed.case_id == FOLLOWER
    assert closed.payload == CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=CASE)
    assert closed.causation_id == closure.event_id
    assert closed.correlation_id == closure.correlation_id
    assert closed.event_id == deterministic_id(closure.event_id, f"closed-with-original:{FOLLOWER}")
    assert closed.occurred_at == now


def test_a_follower_closure_is_never_earlier_than_the_original_closure_or_the_follower_history() -> None:
    closure = original_closure()
    follower = a_follower_with(linked_to(CASE))
    [closed] = close_with_original(follower, closure, T0 - timedelta(days=1))
    assert closed.occurred_at == max(closure.occurred_at, follower.last_event_at or closure.occurred_at)


def test_a_merged_case_closes_with_the_case_it_was_merged_into() -> None:
    merged = CasesMerged(into_case_id=CASE, into_case_no="CL1", merged_by="sup", reason="same")
    [closed] = close_with_original(a_follower_with(ACCEPTED, merged), original_closure(), T0)
    assert isinstance(closed.payload, CaseClosed)


def test_an_unmerged_case_or_one_following_another_case_does_not_close() -> None:
    closure = original_closure()
    unmerged = CaseUnmerged(from_case_id=CASE, unmerged_by="sup", reason="different")
    assert close_with_original(a_follower_with(linked_to(CASE), unmerged, ACCEPTED), closure, T0) == []
    assert close_with_original(a_follower_with(linked_to(ORIGINAL_CASE)), closure, T0) == []


CALLBACK = "http://source.example/cb"
WITH_CALLBACK = ACCEPTED.model_copy(update={"callback_url": CALLBACK})


def test_the_source_system_is_told_of_the_verified_result() -> None:
    events = chain(WITH_CALLBACK, *HANDLED[1:], CaseVerified(verified_by="s"))
    request = feedback_for(fold(CASE, events), events[-1])
    assert request is not None
    assert request.delivery_id == deterministic_id(events[-1].event_id, "feedback")
    assert (request.case_id, request.url) == (CASE, CALLBACK)
    body = request.body
    assert (body.status, body.type, body.result_summary) == (CaseStatus.VERIFIED, "case.verified", "done")
    assert (body.case_no, body.source_system, body.external_id) == ("CL202611270000001", "hotline-12345", "e1")


def test_the_source_system_is_told_of_the_closure_with_the_rating_and_the_reason() -> None:
    events = chain(WITH_CALLBACK, *HANDLED[1:], CaseVerified(verified_by="s"))
    evaluated, closed = evaluate(fold(CASE, events), evaluate_command(Rating.BASICALLY_SATISFIED))
    request = feedback_for(fold(CASE, [*events, evaluated, closed]), closed)
    assert request is not None
    body = request.body
    assert (body.status, body.rating, body.closure_reason) == (
        CaseStatus.CLOSED,
        Rating.BASICALLY_SATISFIED,
        ClosureReason.EVALUATED,
    )


def test_no_feedback_without_a_callback_nor_about_other_events() -> None:
    events = chain(*HANDLED, CaseVerified(verified_by="s"))
    assert feedback_for(fold(CASE, events), events[-1]) is None
    with_callback = chain(WITH_CALLBACK, *HANDLED[1:], CaseVerified(verified_by="s"))
    evaluated, _ = evaluate(fold(CASE, with_callback), evaluate_command(Rating.SATISFIED))
    assert feedback_for(fold(CASE, [*with_callback, evaluated]), evaluated) is None


POLICY = FeedbackPolicy(backoff_base=timedelta(seconds=5), backoff_cap=timedelta(seconds=60), max_attempts=4)


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    assert [POLICY.retry_delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


def test_a_failed_attempt_says_when_the_next_one_is_and_the_last_one_gives_up() -> None:
    verified = chain(CaseVerified(verified_by="s"))[0]
    now = T0 + timedelta(hours=1)
    first = attempt_recorded(verified, CALLBACK, 1, AttemptOutcome(status_code=503), now, POLICY)
    assert isinstance(first.payload, FeedbackFailed)
    assert (first.payload.error, first.payload.next_attempt_at, first.payload.gave_up) == (
        "HTTP 503",
        now + timedelta(seconds=5),
        False,
    )
    assert first.event_id == deterministic_id(verified.event_id, "feedback-attempt:1")
    assert first.causation_id == verified.event_id
    last = attempt_recorded(verified, CALLBACK, 4, AttemptOutcome(error="ConnectError: refused"), now, POLICY)
    assert isinstance(last.payload, FeedbackFailed)
    assert (last.payload.error, last.payload.next_attempt_at, last.payload.gave_up) == (
        "ConnectError: refused",
        None,
        True,
    )


def test_a_2xx_answer_is_a_delivery() -> None:
    verified = chain(CaseVerified(verified_by="s"))[0]
    delivered = attempt_recorded(verified, CALLBACK, 2, AttemptOutcome(status_code=202), T0, POLICY)
    assert delivered.payload == FeedbackDelivered(
        about_event_id=verified.event_id, about_type="case.verified", url=CALLBACK, attempt=2, status_code=202
    )
    assert delivered.event_id == deterministic_id(verified.event_id, "feedback-attempt:2")
