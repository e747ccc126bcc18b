"""Supervision and feedback facts, published by supervision on ``caseloop.supervision.v1``."""

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from caseloop_events.envelope import EventPayload, Producer


class CaseVerified(EventPayload):
    """A supervisor checked the reported result on the ground and found it done (核查)."""

    event_type: ClassVar[str] = "case.verified"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    verified_by: str
    note: str = ""


class CaseVerificationFailed(EventPayload):
    """Verification found the result not done; the case goes back to the unit for rework."""

    event_type: ClassVar[str] = "case.verification_failed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    verified_by: str
    note: str = ""


class Rating(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"


class CaseEvaluated(EventPayload):
    """The citizen evaluated the handling (回访评价)."""

    event_type: ClassVar[str] = "case.evaluated"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    rating: Rating
    comment: str = ""


class ClosureReason(StrEnum):
    EVALUATED = "evaluated"
    NO_EVALUATION_IN_TIME = "no_evaluation_in_time"
    WITH_ORIGINAL_CASE = "with_original_case"


class CaseClosed(EventPayload):
    """The case is closed (结案)."""

    event_type: ClassVar[str] = "case.closed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: ClosureReason
    original_case_id: UUID | None = Field(
        default=None, description="for a duplicate or merged case: the case whose closure closed it"
    )


class CaseReopened(EventPayload):
    """An unsatisfied evaluation sent the case back to be handled again (重办)."""

    event_type: ClassVar[str] = "case.reopened"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: str
    reopen_count: int


class FeedbackDelivered(EventPayload):
    """The source system's callback took a feedback message (反馈) about one event of the case."""

    event_type: ClassVar[str] = "case.feedback_delivered"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    about_event_id: UUID
    about_type: str
    url: str
    attempt: int = Field(ge=1)
    status_code: int


class FeedbackFailed(EventPayload):
    """A feedback delivery failed; it is retried at ``next_attempt_at`` unless supervision gave up."""

    event_type: ClassVar[str] = "case.feedback_failed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    about_event_id: UUID
    about_type: str
    url: str
    attempt: int = Field(ge=1)
    error: str
    next_attempt_at: AwareDatetime | None = None
    gave_up: bool = False
