"""Given a case's events, the supervised case is this (the fold of ADR 0006; pure, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
    CaseTransferred,
)
from caseloop_events.contracts.envelope import Envelope, EventPayload
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
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
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview, JudgedBy
from caseloop_events.testing.fixtures import causal_chain
from caseloop_supervision.domain.model import (
    CaseRef,
    FeedbackState,
    Holder,
    HolderKind,
    LinkKind,
    SupervisedCase,
    fold,
)

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
CASE = uuid.uuid4()
ORIGINAL = uuid.uuid4()
CALLBACK = "http://source.example/callbacks/caseloop"
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)
REPORT = {
    "case_no": "CL202611270000002",
    "source_system": "hotline-12345",
    "external_id": "e2",
    "title": "垃圾",
    "description": "垃圾堆积",
    "location": LOCATION,
    "callback_url": CALLBACK,
}
ACCEPTED = CaseAccepted(**REPORT, accepted_at=T0)
LINKED = CaseLinkedAsDuplicate(
    **REPORT, original_case_id=ORIGINAL, original_case_no="CL202611270000001", similarity=0.8, reason="same heap"
)
MERGED = CasesMerged(into_case_id=ORIGINAL, into_case_no="CL202611270000001", merged_by="sup-1", reason="same")
UNMERGED = CaseUnmerged(from_case_id=ORIGINAL, unmerged_by="sup-1", reason="not the same after all")
REVIEW = CaseQueuedForReview(reason="no rule is confident", candidate_categories=("sanitation", "roads"))


def judged(category: str = "sanitation", by: JudgedBy = JudgedBy.RULES) -> CaseJudged:
    return CaseJudged(
        category=category,
        risk_level=3,
        campaign_ids=("C-URBAN",),
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=by,
        confidence=0.8,
    )


def assigned(
    unit_id: str = "U-1",
    *,
    route: AssignmentRoute = AssignmentRoute.RESPONSIBILITY_LIST,
    assisting_unit_ids: tuple[str, ...] = (),
    fallback_owner: bool = False,
) -> CaseAssigned:
    return CaseAssigned(
        unit_id=unit_id,
        unit_name=f"unit {unit_id}",
        town_code="330110001",
        route=route,
        reason="r",
        assisting_unit_ids=assisting_unit_ids,
        fallback_owner=fallback_owner,
    )


ACKNOWLEDGED = CaseAcknowledged(unit_id="U-1", acknowledged_by="h")
REPORTED = CaseResultReported(unit_id="U-1", reported_by="h", summary="cleared the heap")
VERIFIED = CaseVerified(verified_by="sup-1")
HANDLED: tuple[EventPayload, ...] = (ACCEPTED, judged(), assigned(), ACKNOWLEDGED, REPORTED)


def chain(*payloads: EventPayload) -> list[Envelope]:
    return causal_chain(CASE, payloads, T0, timedelta(minutes=1))


def a_case_with(*payloads: EventPayload) -> SupervisedCase:
    return fold(CASE, chain(*payloads))


def test_an_accepted_case_waits_for_judgment_and_keeps_where_to_send_feedback() -> None:
    case = a_case_with(ACCEPTED)
    assert case.status is CaseStatus.ACCEPTED
    assert case.holder == Holder(HolderKind.SERVICE, "triage", "judgment")
    assert (case.callback_url, case.external_id, case.town_code) == (CALLBACK, "e2", "330110001")


def test_a_rejected_case_keeps_its_reason_and_nobody_holds_it() -> None:
    case = a_case_with(
        CaseRejected(
            case_no="CL202611270000003",
            source_system="grid",
            external_id="e3",
            title="测试",
            reason_code=RejectionReason.TEST_OR_SPAM,
            note="marked as a test",
        )
    )
    assert case.status is CaseStatus.REJECTED
    assert (case.rejection_reason, case.rejection_note) == (RejectionReason.TEST_OR_SPAM, "marked as a test")
    assert case.holder.kind is HolderKind.NOBODY


def test_a_duplicate_follows_its_original_with_the_whole_report_it_carries() -> None:
    case = a_case_with(LINKED)
    assert case.status is CaseStatus.DUPLICATE
    assert case.duplicate_of == CaseRef(ORIGINAL, "CL202611270000001")
    assert case.similarity == 0.8
    assert (case.town_code, case.grid_code, case.callback_url) == ("330110001", "3301100010010101", CALLBACK)
    assert case.follows is not None
    assert case.follows.kind is LinkKind.DUPLICATE
    assert case.holder == Holder(HolderKind.CASE, str(ORIGINAL), "CL202611270000001")


def test_a_merge_stops_the_case_where_it_stood_and_an_unmerge_puts_it_back_there() -> None:
    merged = a_case_with(*HANDLED[:3], MERGED)
    assert merged.status is CaseStatus.MERGED
    assert merged.merged_into == CaseRef(ORIGINAL, "CL202611270000001")
    assert merged.follows is not None
    assert merged.follows.kind is LinkKind.MERGED
    unmerged = a_case_with(*HANDLED[:3], MERGED, UNMERGED)
    assert unmerged.status is CaseStatus.ASSIGNED
    assert unmerged.merged_into is None
    assert unmerged.follows is None


def test_an_unmerged_duplicate_is_accepted_and_the_acceptance_intake_sends_after_keeps_it_so() -> None:
    unmerged = a_case_with(LINKED, UNMERGED)
    assert unmerged.status is CaseStatus.ACCEPTED
    assert unmerged.follows is None
    accepted_again = a_case_with(LINKED, UNMERGED, ACCEPTED)
    assert accepted_again.status is CaseStatus.ACCEPTED
    assert accepted_again.stages.accepted_at is not None
    assert a_case_with(LINKED, UNMERGED, ACCEPTED, judged()).status is CaseStatus.TRIAGED


def test_a_case_no_rule_could_judge_waits_for_an_officer_whose_judgment_is_the_first() -> None:
    waiting = a_case_with(ACCEPTED, REVIEW)
    assert waiting.status is CaseStatus.PENDING_REVIEW
    assert waiting.holder == Holder(HolderKind.SERVICE, "triage", "review")
    officer = a_case_with(ACCEPTED, REVIEW, judged(by=JudgedBy.OFFICER))
    assert officer.status is CaseStatus.TRIAGED
    assert (officer.judged_by, officer.rejudgments) == (JudgedBy.OFFICER, 0)
    assert officer.holder == Holder(HolderKind.SERVICE, "dispatch", "assignment")


def test_a_rejudgment_changes_what_the_case_is_not_where_it_stands() -> None:
    case = a_case_with(ACCEPTED, judged(), assigned(), judged("roads", JudgedBy.OFFICER))
    assert case.status is CaseStatus.ASSIGNED
    assert (case.category, case.judged_by, case.rejudgments) == ("roads", JudgedBy.OFFICER, 1)


def test_a_judgment_arriving_for_a_merged_case_leaves_it_merged() -> None:
    case = a_case_with(ACCEPTED, MERGED, judged())
    assert case.status is CaseStatus.MERGED
    assert case.category == "sanitation"


def test_a_joint_assignment_names_the_lead_the_assisting_units_the_route_and_the_fallback_owner() -> None:
    case = a_case_with(
        ACCEPTED,
        judged(),
        assigned("T-1", assisting_unit_ids=("U-2", "U-3"), route=AssignmentRoute.DISPATCHER, fallback_owner=True),
    )
    assert case.status is CaseStatus.ASSIGNED
    assert (case.unit_id, case.assisting_unit_ids) == ("T-1", ("U-2", "U-3"))
    assert (case.route, case.fallback_owner) == (AssignmentRoute.DISPATCHER, True)
    assert case.holder == Holder(HolderKind.UNIT, "T-1", "unit T-1")


def test_a_returned_case_is_held_by_dispatch_until_it_is_assigned_again_and_every_return_counts() -> None:
    returned = CaseReturned(unit_id="U-1", returned_by="h", reason="not ours")
    between = a_case_with(ACCEPTED, judged(), assigned(), returned)
    assert between.status is CaseStatus.RETURNED
    assert between.holder == Holder(HolderKind.SERVICE, "dispatch", "re-routing")
    twice = a_case_with(ACCEPTED, judged(), assigned(), returned, assigned("U-2"), returned, assigned("T-1"))
    assert (twice.status, twice.returns, twice.unit_id) == (CaseStatus.ASSIGNED, 2, "T-1")


def test_a_transfer_is_counted_and_the_assignment_that_follows_moves_the_case() -> None:
    transferred = CaseTransferred(from_unit_id="U-1", to_unit_id="U-2", transferred_by="h", reason="theirs")
    between = a_case_with(ACCEPTED, judged(), assigned(), ACKNOWLEDGED, transferred)
    assert (between.status, between.transfers) == (CaseStatus.ACKNOWLEDGED, 1)
    after = a_case_with(
        ACCEPTED, judged(), assigned(), ACKNOWLEDGED, transferred, assigned("U-2", route=AssignmentRoute.TRANSFER)
    )
    assert (after.status, after.unit_id, after.route) == (CaseStatus.ASSIGNED, "U-2", AssignmentRoute.TRANSFER)


def test_a_failed_verification_is_rework_counted_with_the_same_unit() -> None:
    case = a_case_with(*HANDLED, CaseVerificationFailed(verified_by="sup-1", note="still there"))
    assert (case.status, case.reworks) == (CaseStatus.ACKNOWLEDGED, 1)
    assert case.holder == Holder(HolderKind.UNIT, "U-1", "unit U-1")
    assert case.result_summary == "cleared the heap"


def test_a_verified_case_waits_for_the_citizen_since_its_verification() -> None:
    events = chain(*HANDLED, VERIFIED)
    case = fold(CASE, events)
    assert case.status is CaseStatus.VERIFIED
    assert case.holder == Holder(HolderKind.CITIZEN, None, "evaluation")
    assert case.verification == events[-1]
    assert case.awaiting_evaluation_since == events[-1].occurred_at


def test_a_reopened_case_goes_back_to_dispatch_and_once_verified_again_can_be_evaluated_again() -> None:
    unsatisfied = (
        *HANDLED,
        VERIFIED,
        CaseEvaluated(rating=Rating.UNSATISFIED),
        CaseReopened(reason="no", reopen_count=1),
    )
    reopened = a_case_with(*unsatisfied)
    assert (reopened.status, reopened.reopen_count) == (CaseStatus.REOPENED, 1)
    assert reopened.holder == Holder(HolderKind.SERVICE, "dispatch", "reassignment")
    assert reopened.awaiting_evaluation_since is None
    handled_again = (assigned(route=AssignmentRoute.REOPENED), ACKNOWLEDGED, REPORTED, VERIFIED)
    events = chain(*unsatisfied, *handled_again)
    verified_again = fold(CASE, events)
    assert (verified_again.status, verified_again.rating) == (CaseStatus.VERIFIED, None)
    assert verified_again.awaiting_evaluation_since == events[-1].occurred_at
    assert verified_again.reopen_count == 1


def test_a_closed_case_keeps_why_it_closed_and_the_case_it_closed_with() -> None:
    case = a_case_with(LINKED, CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=ORIGINAL))
    assert case.status is CaseStatus.CLOSED
    assert (case.closure_reason, case.closed_with_case_id) == (ClosureReason.WITH_ORIGINAL_CASE, ORIGINAL)
    assert case.holder.kind is HolderKind.NOBODY
    assert case.follows is not None, "the link stays: it is why the case closed"


def test_feedback_attempts_tell_where_the_feedback_stands_without_moving_the_case() -> None:
    events = chain(*HANDLED, VERIFIED)
    verified = events[-1]
    retry_at = T0 + timedelta(hours=1)

    def failed(attempt: int, gave_up: bool = False) -> FeedbackFailed:
        return FeedbackFailed(
            about_event_id=verified.event_id,
            about_type="case.verified",
            url=CALLBACK,
            attempt=attempt,
            error="HTTP 503",
            next_attempt_at=None if gave_up else retry_at,
            gave_up=gave_up,
        )

    retrying = fold(CASE, [*events, *causal_chain(CASE, [failed(1)], T0 + timedelta(minutes=10), timedelta(0))])
    [feedback] = retrying.feedback
    assert (feedback.state, feedback.attempts, feedback.next_attempt_at) == (FeedbackState.RETRYING, 1, retry_at)
    assert retrying.status is CaseStatus.VERIFIED

    delivered = FeedbackDelivered(
        about_event_id=verified.event_id, about_type="case.verified", url=CALLBACK, attempt=2, status_code=204
    )
    attempts = causal_chain(CASE, [failed(1), delivered], T0 + timedelta(minutes=10), timedelta(minutes=1))
    [feedback] = fold(CASE, [*events, *attempts]).feedback
    assert (feedback.state, feedback.attempts, feedback.status_code) == (FeedbackState.DELIVERED, 2, 204)

    gave_up = causal_chain(CASE, [failed(1), failed(2, gave_up=True)], T0 + timedelta(minutes=10), timedelta(minutes=1))
    [feedback] = fold(CASE, [*events, *gave_up]).feedback
    assert (feedback.state, feedback.next_attempt_at) == (FeedbackState.GAVE_UP, None)
