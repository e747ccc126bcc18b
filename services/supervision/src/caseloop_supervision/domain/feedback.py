"""Feedback (反馈) to the source system: what it is told about the events supervision emits, and
what each delivery attempt's outcome becomes. Pure: time is given, the HTTP call is elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Envelope, EventPayload, deterministic_id, event_caused_by
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseVerified,
    ClosureReason,
    FeedbackDelivered,
    FeedbackFailed,
    Rating,
)
from caseloop_supervision.domain.decisions import SUPERVISION
from caseloop_supervision.domain.model import SupervisedCase


class FeedbackBody(BaseModel):
    """The JSON a source system's callback receives about one event of its case."""

    model_config = ConfigDict(frozen=True)

    case_id: UUID
    case_no: str | None
    source_system: str | None
    external_id: str | None
    event_id: UUID
    type: str = Field(description="the type of the event this feedback is about, e.g. case.verified")
    occurred_at: datetime
    status: CaseStatus
    result_summary: str | None = None
    rating: Rating | None = None
    closure_reason: ClosureReason | None = None
    original_case_id: UUID | None = None


@dataclass(frozen=True)
class FeedbackRequest:
    """A delivery to queue: who to call, about which event, with what body."""

    delivery_id: UUID
    case_id: UUID
    url: str
    about: Envelope
    body: FeedbackBody


def delivery_id_for(about_event_id: UUID) -> UUID:
    """One delivery per event: the receiver's Idempotency-Key, the same on every attempt."""
    return deterministic_id(about_event_id, "feedback")


def feedback_for(case: SupervisedCase, about: Envelope) -> FeedbackRequest | None:
    """The feedback owed to the source system about an event supervision just emitted, if it asked
    for any: the verified result and the closure (``case`` is the case as that event left it)."""
    if case.callback_url is None:
        return None
    match about.payload:
        case CaseVerified():
            body = _body(case, about, CaseStatus.VERIFIED, result_summary=case.result_summary)
        case CaseClosed() as closed:
            body = _body(
                case,
                about,
                CaseStatus.CLOSED,
                result_summary=case.result_summary,
                rating=case.rating if closed.reason is ClosureReason.EVALUATED else None,
                closure_reason=closed.reason,
                original_case_id=closed.original_case_id,
            )
        case _:
            return None
    return FeedbackRequest(delivery_id_for(about.event_id), case.case_id, case.callback_url, about, body)


def _body(
    case: SupervisedCase,
    about: Envelope,
    status: CaseStatus,
    *,
    result_summary: str | None = None,
    rating: Rating | None = None,
    closure_reason: ClosureReason | None = None,
    original_case_id: UUID | None = None,
) -> FeedbackBody:
    return FeedbackBody(
        case_id=case.case_id,
        case_no=case.case_no,
        source_system=case.source_system,
        external_id=case.external_id,
        event_id=about.event_id,
        type=about.type,
        occurred_at=about.occurred_at,
        status=status,
        result_summary=result_summary,
        rating=rating,
        closure_reason=closure_reason,
        original_case_id=original_case_id,
    )


@dataclass(frozen=True)
class FeedbackPolicy:
    """How often and how patiently supervision retries a callback."""

    backoff_base: timedelta = timedelta(seconds=5)
    backoff_cap: timedelta = timedelta(hours=1)
    max_attempts: int = 8

    def retry_delay(self, attempt: int) -> timedelta:
        """Exponential back-off after the ``attempt``-th failure: base, 2×base, 4×base… up to the cap."""
        delay: timedelta = self.backoff_base * 2 ** (attempt - 1)
        return min(delay, self.backoff_cap)


@dataclass(frozen=True)
class AttemptOutcome:
    """What one POST to the callback gave: a status code, or the error that prevented one."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt_recorded(
    about: Envelope, url: str, attempt: int, outcome: AttemptOutcome, now: datetime, policy: FeedbackPolicy
) -> Envelope:
    """The event recording the ``attempt``-th delivery of the feedback about ``about``.

    Its id depends on the event and the attempt number only, so recording an attempt twice is
    the same event."""
    payload: EventPayload
    if outcome.delivered and outcome.status_code is not None:
        payload = FeedbackDelivered(
            about_event_id=about.event_id,
            about_type=about.type,
            url=url,
            attempt=attempt,
            status_code=outcome.status_code,
        )
    else:
        gave_up = attempt >= policy.max_attempts
        payload = FeedbackFailed(
            about_event_id=about.event_id,
            about_type=about.type,
            url=url,
            attempt=attempt,
            error=outcome.error or f"HTTP {outcome.status_code}",
            next_attempt_at=None if gave_up else now + policy.retry_delay(attempt),
            gave_up=gave_up,
        )
    return event_caused_by(about, payload, actor=SUPERVISION, occurred_at=now, decision=f"feedback-attempt:{attempt}")
