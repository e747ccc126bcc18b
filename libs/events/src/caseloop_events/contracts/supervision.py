"""Supervision and feedback facts, published by supervision on ``caseloop.supervision.v1``."""

from enum import StrEnum
from typing import ClassVar

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


class CaseClosed(EventPayload):
    """The case is closed (结案)."""

    event_type: ClassVar[str] = "case.closed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: ClosureReason


class CaseReopened(EventPayload):
    """An unsatisfied evaluation sent the case back to be handled again (重办)."""

    event_type: ClassVar[str] = "case.reopened"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: str
    reopen_count: int
