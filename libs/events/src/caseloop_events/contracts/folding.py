"""How a service folds a stream (a case, a region) into its state: pure, in causal order.

Every service declares one ``StreamModel``: the state of a stream before any event, and one event
applied to a state. The runtime folds each stream with it and keeps the state between units of
work, resuming from it when the stream only grew (``caseloop_events.runtime.streams``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
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
