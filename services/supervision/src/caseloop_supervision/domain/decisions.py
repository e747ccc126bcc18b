"""What supervision decides: verification, evaluation and closure. Pure: time is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseVerificationFailed,
    CaseVerified,
    ClosureReason,
    Rating,
)
from caseloop_events.envelope import Actor, ActorRole, Envelope, Producer, event_answering, event_caused_by
from caseloop_events.errors import RuleViolation
from caseloop_supervision.domain.model import SupervisedCase


class NotAwaitingVerification(RuleViolation):
    """Only a case whose unit reported a result can be verified."""


class NotAwaitingEvaluation(RuleViolation):
    """Only a verified, not yet evaluated case can be evaluated."""


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    by: str
    note: str
    now: datetime
    correlation_id: UUID


@dataclass(frozen=True)
class EvaluateHandling:
    rating: Rating
    comment: str
    now: datetime
    correlation_id: UUID


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
    actor = Actor(id=command.by, role=ActorRole.SUPERVISOR)
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
        actor=Actor(id="citizen", role=ActorRole.CITIZEN),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    if command.rating not in CLOSING_RATINGS:
        # Reopening for an unsatisfied citizen (重办) belongs to the rework stage, not yet built.
        return [evaluated]
    closed = event_caused_by(
        evaluated,
        CaseClosed(reason=ClosureReason.EVALUATED),
        actor=Actor.system(Producer.SUPERVISION),
        occurred_at=command.now,
        decision="closed",
    )
    return [evaluated, closed]
