"""A stream in a unit of work: events kept in causal order however they arrive, the state folded
once and resumed while the stream only grows, and the cache of the streams a process wrote last."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.folding import StreamModel
from caseloop_events.contracts.supervision import CaseVerified
from caseloop_events.runtime.streams import Stream, StreamCache, StreamSnapshot

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CASE = uuid.UUID(int=1)


class CountingModel:
    """Folds into the tuple of who verified, counting the events evolved."""

    def __init__(self) -> None:
        self.evolved = 0
        self.model = StreamModel[tuple[str, ...]](lambda _case_id: (), self._evolve)

    def _evolve(self, state: tuple[str, ...], event: Envelope) -> tuple[str, ...]:
        self.evolved += 1
        assert isinstance(event.payload, CaseVerified)
        return (*state, event.payload.verified_by)


def an_event(minutes: float, *, caused_by: Envelope | None = None, name: str = "s") -> Envelope:
    return new_event(
        CaseVerified(verified_by=name),
        case_id=CASE,
        actor=Actor(id="supervisor-1", role=ActorRole.SUPERVISOR),
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id=uuid.uuid4(),
        causation_id=caused_by.event_id if caused_by is not None else None,
    )


def empty_stream(model: StreamModel[tuple[str, ...]]) -> Stream[tuple[str, ...]]:
    return Stream(StreamSnapshot(CASE, 0, ()), model)


@st.composite
def histories(draw: st.DrawFn) -> list[Envelope]:
    """Events of one case at random times, some caused by an earlier one (an effect may be stamped
    before its cause, as a clock of another machine would stamp it)."""
    events: list[Envelope] = []
    for n in range(draw(st.integers(min_value=1, max_value=12))):
        cause = draw(st.sampled_from([None, *events])) if events else None
        events.append(an_event(draw(st.integers(min_value=0, max_value=20)), caused_by=cause, name=f"s{n}"))
    return events


@given(histories(), st.randoms())
def test_events_recorded_in_any_order_are_kept_in_causal_order(events: list[Envelope], rng: object) -> None:
    arrival = list(events)
    rng.shuffle(arrival)  # type: ignore[attr-defined]
    counting = CountingModel()
    stream = empty_stream(counting.model)
    for event in arrival:
        assert stream.add(event)
        assert stream.state == counting.model.fold(CASE, causal_order(stream.events)), "folded as a fresh fold would"
    assert list(stream.events) == causal_order(events)


def test_an_event_recorded_twice_is_kept_once() -> None:
    stream = empty_stream(CountingModel().model)
    event = an_event(1)
    assert stream.add(event)
    assert not stream.add(event)
    assert list(stream.new) == [event]


def test_a_stream_that_only_grows_folds_only_its_new_events() -> None:
    counting = CountingModel()
    stream = empty_stream(counting.model)
    for minute in range(5):
        stream.add(an_event(minute, name=f"s{minute}"))
        assert stream.state[-1] == f"s{minute}"
    assert counting.evolved == 5, "each event folded once"

    again = Stream(stream.written(1), counting.model)
    again.add(an_event(10, name="later"))
    assert again.state[-1] == "later"
    assert counting.evolved == 6, "the state written was resumed, not folded again"


def test_an_event_that_lands_before_others_folds_the_stream_again() -> None:
    counting = CountingModel()
    stream = empty_stream(counting.model)
    stream.add(an_event(5, name="late"))
    assert stream.state == ("late",)
    stream.add(an_event(1, name="early"))
    assert stream.state == ("early", "late")
    assert counting.evolved == 3


def test_the_cache_forgets_the_streams_used_least_recently() -> None:
    cache: StreamCache[tuple[str, ...]] = StreamCache(2)
    a, b, c = (StreamSnapshot(uuid.uuid4(), 1, ()) for _ in range(3))
    cache.put(a)
    cache.put(b)
    assert cache.get(a.stream_id) is a
    cache.put(c)
    assert b.stream_id not in cache, "b was used least recently"
    assert a.stream_id in cache
    assert c.stream_id in cache
    cache.forget([a.stream_id])
    assert len(cache) == 1


def test_a_state_with_changes_is_the_state_replace_would_make_and_the_old_one_stays() -> None:
    from dataclasses import dataclass, replace

    import pytest

    from caseloop_events.contracts.folding import with_changes

    @dataclass(frozen=True)
    class Case:
        status: str = "accepted"
        returns: int = 0
        units: tuple[str, ...] = ()

    before = Case(units=("U-1",))
    after = with_changes(before, returns=1, status="returned")
    assert after == replace(before, returns=1, status="returned")
    assert before == Case(units=("U-1",)), "the state it came from is unchanged"
    with pytest.raises(TypeError, match="no field"):
        with_changes(before, retruns=2)
