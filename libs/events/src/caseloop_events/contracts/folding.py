"""Folding a case's events into its state, without folding the same events twice.

A handler folds a case from its whole log, often several times per event (after recording it,
after emitting what it decided), and a replay folds it again in every batch that holds one of its
events. Folding is pure, so the state after a run of events can be kept and folding resumed from
it when the next log starts with that very run. "That very run" means the same ``Envelope``
objects, not equal ids: envelopes are immutable, and the logs a transaction (or a replay) keeps
hand out the same objects, so an identity check is both cheap and exact — a log read afresh from
the database simply folds from the start.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar
from uuid import UUID

from caseloop_events.contracts.envelope import Envelope

State = TypeVar("State")

#: Cases whose last fold is kept: enough for the cases of a poll or of a replay's batch. Each holds
#: its events alive (in a replay, the same objects its kept logs hold) and one state: 2,000 cost the
#: live supervision service 40 MB more memory for no measurable gain over 500.
FOLDED_CASES = 500


class Folder(Generic[State]):
    """``fold(case_id, events)`` = ``evolve`` applied to ``start(case_id)`` event by event, resumed
    from the last fold of the case when ``events`` begins with the events that fold saw."""

    def __init__(
        self,
        start: Callable[[UUID], State],
        evolve: Callable[[State, Envelope], State],
        max_cases: int = FOLDED_CASES,
    ) -> None:
        self._start = start
        self._evolve = evolve
        self._max_cases = max_cases
        self._last: OrderedDict[UUID, tuple[list[Envelope], State]] = OrderedDict()

    def __call__(self, case_id: UUID, events: Iterable[Envelope]) -> State:
        log = list(events)
        state, done = self._start(case_id), 0
        last = self._last.get(case_id)
        if last is not None:
            seen, folded = last
            if len(seen) <= len(log) and all(a is b for a, b in zip(seen, log, strict=False)):
                state, done = folded, len(seen)
        for event in log[done:]:
            state = self._evolve(state, event)
        self._last[case_id] = (log, state)
        self._last.move_to_end(case_id)
        if len(self._last) > self._max_cases:
            self._last.popitem(last=False)
        return state
