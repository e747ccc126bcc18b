"""What supervision decides: verification, evaluation, reopening and closure. Pure: time is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    Producer,
    deterministic_id,
    event_answering,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import RuleViolation
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseVerificationFailed,
    CaseVerified,
    ClosureReason,
    Rating,
)
from caseloop_supervision.domain.model import FOLLOWING, SupervisedCase


class NotAwaitingVerification(RuleViolation):
    """Only a case whose unit reported a result can be verified."""


class NotAwaitingEvaluation(RuleViolation):
    """Only a verified, not yet evaluated case can be evaluated."""


@dataclass(frozen=True)
class VerifyResult:
    case_id: UUID
    passed: bool
    by: str
    note: str
    now: datetime
    correlation_id: UUID
    #: The authenticated caller who sent the request.
    subject: str | None = None


@dataclass(frozen=True)
class EvaluateHandling:
    case_id: UUID
    rating: Rating
    comment: str
    now: datetime
    correlation_id: UUID
    #: The authenticated caller who sent the request.
    subject: str | None = None


#: Who decides when a rule, not a person, does: supervision itself.
SUPERVISION = Actor.system(Producer.SUPERVISION)

#: Ratings with which the citizen accepts the handling, so the case closes.
CLOSING_RATINGS = frozenset({Rating.SATISFIED, Rating.BASICALLY_SATISFIED})


def verify(case: SupervisedCase, command: VerifyResult) -> list[Envelope]:
    if case.status is not CaseStatus.RESULT_REPORTED or case.status_event is None:
        raise NotAwaitingVerification(f"case is {case.status}, verification needs a reported result")
    payload = (
        CaseVerified(verified_by=command.by, note=command.note)
        if command.passed
        else CaseVerificationFailed(verified_by=command.by, note=command.note)
    )
    actor = Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject)
    return [
        event_answering(
            case.status_event, payload, actor=actor, occurred_at=command.now, correlation_id=command.correlation_id
        )
    ]


def evaluate(case: SupervisedCase, command: EvaluateHandling) -> list[Envelope]:
    if case.status is not CaseStatus.VERIFIED or case.status_event is None or case.rating is not None:
        state = f"evaluated {case.rating}" if case.rating is not None else str(case.status)
        raise NotAwaitingEvaluation(f"case is {state}, evaluation needs a verified case not yet evaluated")
    evaluated = event_answering(
        case.status_event,
        CaseEvaluated(rating=command.rating, comment=command.comment),
        actor=Actor(id="citizen", role=ActorRole.CITIZEN, subject=command.subject),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    if command.rating not in CLOSING_RATINGS:
        # The citizen is not satisfied: the case is handled again (重办); dispatch re-assigns it.
        reopened = event_caused_by(
            evaluated,
            CaseReopened(reason=command.comment or "unsatisfied evaluation", reopen_count=case.reopen_count + 1),
            actor=SUPERVISION,
            occurred_at=command.now,
            decision="reopened",
        )
        return [evaluated, reopened]
    closed = event_caused_by(
        evaluated,
        CaseClosed(reason=ClosureReason.EVALUATED),
        actor=SUPERVISION,
        occurred_at=command.now,
        decision="closed",
    )
    return [evaluated, closed]


def close_if_evaluation_overdue(case: SupervisedCase, now: datetime, window: timedelta) -> list[Envelope]:
    """A verified case the citizen has not evaluated within the window closes (a timer's decision)."""
    since = case.awaiting_evaluation_since
    if since is None or case.verification is None or now < since + window:
        return []
    return [
        event_caused_by(
            case.verification,
            CaseClosed(reason=ClosureReason.NO_EVALUATION_IN_TIME),
            actor=SUPERVISION,
            occurred_at=now,
            decision="closed-no-evaluation-in-time",
        )
    ]


def close_with_original(follower: SupervisedCase, original_closure: Envelope, now: datetime) -> list[Envelope]:
    """A duplicate or merged case closes with the case it follows, so a linked report is never left open.

    The id depends only on the original's closure and the follower, so whichever path closes the
    follower (the original closing, or a link read after it closed) it is the same event.
    """
    link = follower.follows
    if follower.status not in FOLLOWING or link is None or link.original.case_id != original_closure.case_id:
        return []
    # After the original's closure and after everything the follower has seen, whatever the clocks say.
    occurred_at = max(now, original_closure.occurred_at, follower.last_event_at or now)
    return [
        new_event(
            CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=original_closure.case_id),
            case_id=follower.case_id,
            actor=SUPERVISION,
            occurred_at=occurred_at,
            correlation_id=original_closure.correlation_id,
            causation_id=original_closure.event_id,
            event_id=deterministic_id(original_closure.event_id, f"closed-with-original:{follower.case_id}"),
        )
    ]
