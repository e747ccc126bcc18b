"""Causal order of a case's events, whatever order the topics delivered them in."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from uuid import UUID

from caseloop_events.contracts.envelope import Envelope


def causal_order(events: Iterable[Envelope]) -> list[Envelope]:
    """Events sorted by time, every event after its cause, ties broken by event id.

    Consumers read the four topics interleaved differently; folding this order instead of
    arrival order gives every consumer (and every replay) the same state. Duplicates by
    event id are dropped.
    """
    by_id: dict[UUID, Envelope] = {}
    for event in events:
        by_id.setdefault(event.event_id, event)
    waiting_on: dict[UUID, list[Envelope]] = {}
    ready: list[tuple[object, str, Envelope]] = []
    for event in by_id.values():
        if event.causation_id is not None and event.causation_id in by_id and event.causation_id != event.event_id:
            waiting_on.setdefault(event.causation_id, []).append(event)
        else:
            heapq.heappush(ready, (event.occurred_at, str(event.event_id), event))
    ordered: list[Envelope] = []
    while ready:
        _, _, event = heapq.heappop(ready)
        ordered.append(event)
        for effect in waiting_on.pop(event.event_id, []):
            heapq.heappush(ready, (effect.occurred_at, str(effect.event_id), effect))
    # A causation cycle cannot come from caseloop's producers; keep such events rather than lose them.
    for stranded in waiting_on.values():
        ordered.extend(sorted(stranded, key=lambda e: (e.occurred_at, str(e.event_id))))
    return ordered
