"""Streams: a case's (or a region's) events in causal order, their folded state and their version.

A service folds each stream it keeps from the events it recorded for it (ADR 0002). A unit of work
loads the streams it touches at once, appends what it records and emits, and writes them back with
a check that nobody else wrote them meanwhile: each stream's ``version`` counts the writes to it
(ADR 0014). What a process read and wrote last is kept in a ``StreamCache``, so a stream is read
from the database again only when another process (or a failed write) changed it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic
from uuid import UUID

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.folding import State, StreamModel


@dataclass(frozen=True)
class StreamSnapshot(Generic[State]):
    """A stream as written: immutable, so a cache and any number of units of work can share it."""

    stream_id: UUID
    version: int
    events: tuple[Envelope, ...]
    #: The state after ``events[:folded]`` (``folded`` may be short of all of them: folded lazily).
    state: State | None = None
    folded: int = 0


class Stream(Generic[State]):
    """A stream inside one unit of work: what was read, plus what the unit of work recorded."""

    def __init__(self, snapshot: StreamSnapshot[State], model: StreamModel[State]) -> None:
        self.stream_id = snapshot.stream_id
        #: The version read; a write expects the database to still hold it.
        self.version = snapshot.version
        self._model = model
        self._events: list[Envelope] = list(snapshot.events)
        self._ids = {event.event_id for event in self._events}
        self._causes = {event.causation_id for event in self._events}
        self._latest = max(map(_order_key, self._events), default=None)
        self._state = snapshot.state
        # The events the state folded, by identity: the state stays good while they stay first.
        self._folded: list[Envelope] = list(snapshot.events[: snapshot.folded]) if snapshot.state is not None else []
        #: Recorded in this unit of work, in the order recorded: what the write appends.
        self.new: list[Envelope] = []

    @property
    def events(self) -> Sequence[Envelope]:
        """Every event of the stream in causal order."""
        return self._events

    @property
    def known(self) -> bool:
        """Whether the stream holds any event."""
        return bool(self._events)

    def holds(self, event_id: UUID) -> bool:
        return event_id in self._ids

    def add(self, event: Envelope) -> bool:
        """Record the event in the stream; False when the stream holds it already (a redelivery)."""
        if event.event_id in self._ids:
            return False
        self.new.append(event)
        key = _order_key(event)
        if (self._latest is None or key >= self._latest) and event.event_id not in self._causes:
            # The usual case: the latest event, and none here is its effect: causal order puts it last.
            self._events.append(event)
        else:
            self._events = causal_order([*self._events, event])
        self._ids.add(event.event_id)
        self._causes.add(event.causation_id)
        self._latest = key if self._latest is None else max(self._latest, key)
        return True

    @property
    def state(self) -> State:
        """The stream folded, resumed from the last fold while its events are still first."""
        folded, events = self._folded, self._events
        if (
            self._state is None
            or len(folded) > len(events)
            or any(a is not b for a, b in zip(folded, events, strict=False))
        ):
            self._state, folded = self._model.start(self.stream_id), []
        state = self._state
        for event in events[len(folded) :]:
            state = self._model.evolve(state, event)
        self._state, self._folded = state, list(events)
        return state

    def written(self, version: int) -> StreamSnapshot[State]:
        """The stream as it stands once written at ``version``."""
        self.state  # noqa: B018 - fold now, so the snapshot carries the state
        return StreamSnapshot(self.stream_id, version, tuple(self._events), self._state, len(self._folded))

    def read(self) -> StreamSnapshot[State]:
        """The stream as it was read (for a unit of work that wrote nothing to it)."""
        return self.written(self.version)


def _order_key(event: Envelope) -> tuple[datetime, str]:
    """What causal order sorts events by, among those whose causes are placed (time, then id)."""
    return (event.occurred_at, str(event.event_id))


class StreamCache(Generic[State]):
    """The streams a process wrote or read last, at most ``capacity`` (least recently used go first).

    A unit of work takes a cached stream as it is, without asking the database: its write checks
    that the stream is still at the version cached, and a stream someone else wrote meanwhile makes
    the write fail, the stream forgotten here, and the unit of work done again on what the database
    holds (ADR 0014). In a service that runs as one process, that never happens."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[UUID, StreamSnapshot[State]] = OrderedDict()

    def get(self, stream_id: UUID) -> StreamSnapshot[State] | None:
        snapshot = self._kept.get(stream_id)
        if snapshot is not None:
            self._kept.move_to_end(stream_id)
        return snapshot

    def put(self, snapshot: StreamSnapshot[State]) -> None:
        """Keep the snapshot, unless a later version of the stream is kept already: a unit of work
        that read a stream before another wrote it ends after that write."""
        kept = self._kept.get(snapshot.stream_id)
        if kept is None or kept.version <= snapshot.version:
            self._kept[snapshot.stream_id] = snapshot
        self._kept.move_to_end(snapshot.stream_id)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def forget(self, stream_ids: Iterable[UUID]) -> None:
        for stream_id in stream_ids:
            self._kept.pop(stream_id, None)

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._kept
