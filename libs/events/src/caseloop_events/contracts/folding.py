"""How a service folds a stream (a case, a region) into its state: pure, in causal order.

Every service declares one ``StreamModel``: the state of a stream before any event, and one event
applied to a state. The runtime folds each stream with it and keeps the state between units of
work, resuming from it when the stream only grew (``caseloop_events.runtime.streams``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from caseloop_events.contracts.envelope import Envelope

State = TypeVar("State")


@dataclass(frozen=True)
class StreamModel(Generic[State]):
    """The state before any event (``start``), and one event applied to a state (``evolve``)."""

    start: Callable[[UUID], State]
    evolve: Callable[[State, Envelope], State]

    def fold(self, stream_id: UUID, events: Iterable[Envelope]) -> State:
        """The state after ``events``, which must come in causal order."""
        state = self.start(stream_id)
        for event in events:
            state = self.evolve(state, event)
        return state


Frozen = TypeVar("Frozen")


def with_changes(state: Frozen, **changes: Any) -> Frozen:
    """``dataclasses.replace`` for the frozen dataclasses a fold builds, without calling ``__init__``.

    A fold makes a new state for every event; the case states have forty and more fields, and
    ``replace`` passes each through the generated ``__init__`` and its ``object.__setattr__`` — a
    fold of supervision's cases spent most of a replay there (docs/performance.md). The new object
    shares the old one's field values and takes the changes; a state with a ``__post_init__`` or
    ``__slots__`` must not be changed this way."""
    fields = type(state).__dataclass_fields__  # type: ignore[attr-defined]
    unknown = changes.keys() - fields.keys()
    if unknown:
        raise TypeError(f"{type(state).__name__} has no field {sorted(unknown)}")
    new = object.__new__(type(state))
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new
