"""A case's events fold in causal order whatever order the topics delivered them in."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, new_event
from caseloop_events.contracts.supervision import CaseClosed, CaseEvaluated, CaseVerified, ClosureReason, Rating

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CASE = uuid.uuid4()


def an_event(payload: EventPayload, at: datetime, cause: Envelope | None = None) -> Envelope:
    return new_event(
        payload,
        case_id=CASE,
        actor=Actor(id="s", role=ActorRole.SUPERVISOR),
        occurred_at=at,
        correlation_id=uuid.uuid4(),
        causation_id=cause.event_id if cause else None,
    )


def test_every_arrival_order_gives_the_same_causal_order() -> None:
    verified = an_event(CaseVerified(verified_by="s"), T0)
    evaluated = an_event(CaseEvaluated(rating=Rating.SATISFIED), T0 + timedelta(minutes=1), verified)
    closed = an_event(CaseClosed(reason=ClosureReason.EVALUATED), T0 + timedelta(minutes=1), evaluated)
    for arrival in itertools.permutations([verified, evaluated, closed]):
        assert causal_order(arrival) == [verified, evaluated, closed]


def test_an_effect_stamped_earlier_than_its_cause_still_comes_after_it() -> None:
    cause = an_event(CaseVerified(verified_by="s"), T0)
    skewed_effect = an_event(CaseEvaluated(rating=Rating.SATISFIED), T0 - timedelta(seconds=5), cause)
    assert causal_order([skewed_effect, cause]) == [cause, skewed_effect]


def test_a_duplicate_delivery_appears_once() -> None:
    event = an_event(CaseVerified(verified_by="s"), T0)
    assert causal_order([event, event]) == [event]
