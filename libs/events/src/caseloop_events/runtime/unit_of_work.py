"""The unit of work: read the streams it needs at once, decide in memory, write everything at once.

A unit of work — one HTTP command, one consumer poll, one replay batch, one timer round — reads
the streams it touches in one round trip (``load``), keeps what its handlers record and emit and
the projection rows they put in memory, and writes it all in one atomic step (``commit``): the case
log, the outbox, the projections, the consumer checkpoints and the streams' new versions. The write
expects every stream it changed to still be at the version it read; if another writer got there
first, nothing is written and the unit of work is done again on fresh state (``VersionConflict``).
On PostgreSQL that write is one statement; on SQLite one ``BEGIN IMMEDIATE`` transaction (ADR 0014).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from sqlalchemy import Table

from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.folding import State, StreamModel
from caseloop_events.runtime.streams import Stream, StreamCache, StreamSnapshot
from caseloop_events.runtime.telemetry import current_traceparent

Deps = TypeVar("Deps")


class VersionConflict(Exception):
    """A stream the unit of work read was written by someone else before it wrote: do it again."""


class KeyedLocks:
    """One lock per key, for the units of work of one process that would all write one stream
    (every screening of a grid): they take turns instead of racing and being done again."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: object) -> None:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave(key)
            raise

    def release(self, key: object) -> None:
        self._locks[key][0].release()
        self._leave(key)

    def _leave(self, key: object) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


@dataclass(frozen=True)
class Checkpoint:
    """Where a consumer stands on a partition: the next offset to read, and the event id of the
    record before it (None when that record is not an event)."""

    consumer: str
    topic: str
    partition: int
    next_offset: int
    last_event_id: str | None = None


@dataclass
class Changes:
    """Everything one unit of work writes, in one step."""

    #: Each stream written, with the version it was read at; it is written at that version + 1.
    versions: dict[UUID, int] = field(default_factory=dict)
    #: New events of the streams (recorded and emitted), with their JSON as stored.
    events: list[tuple[Envelope, str]] = field(default_factory=list)
    #: The events emitted (the service's own), in order: the outbox rows.
    outbox: list[tuple[Envelope, str]] = field(default_factory=list)
    #: Projection rows by table and primary key: the row to upsert, or None to delete it.
    rows: dict[Table, dict[tuple[Any, ...], dict[str, Any] | None]] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    #: The W3C ``traceparent`` of the span each emitted event was emitted in, by event id (none
    #: for an event emitted outside any span): stored with its outbox row (ADR 0018).
    traceparents: dict[UUID, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.versions or self.events or self.rows or self.checkpoints)


class StreamStore(Protocol[State]):
    """Where streams and projections live: the database, or an in-memory fake in unit tests."""

    topic: str

    async def load(
        self,
        stream_ids: Sequence[UUID],
        cache: StreamCache[State],
        model: StreamModel[State],
        *,
        verify: bool = False,
    ) -> dict[UUID, StreamSnapshot[State]]:
        """Each stream as cached, or as stored; ``verify``: as stored, even if cached."""
        ...

    async def write(self, changes: Changes, now: datetime) -> None:
        """Write the changes at once, or nothing and raise ``VersionConflict``."""
        ...

    def committed(self, emitted: Sequence[tuple[Envelope, str]], traceparents: Mapping[UUID, str]) -> None:
        """Tell whoever listens (the outbox relay) what a successful write emitted (and the trace
        context each event was emitted in)."""
        ...


class UnitOfWork(Generic[Deps, State]):
    """What a handler works with: the streams it reads and writes, the projection rows it puts,
    the service's dependencies (``deps``) and the time (``now``)."""

    def __init__(
        self,
        store: StreamStore[State],
        model: StreamModel[State],
        cache: StreamCache[State],
        deps: Deps,
        clock: Clock,
        locks: KeyedLocks | None = None,
    ) -> None:
        self.deps = deps
        self.clock = clock
        self._locks = locks or KeyedLocks()
        self._held: list[object] = []
        self._store = store
        self._model = model
        self._cache = cache
        self._streams: dict[UUID, Stream[State]] = {}
        self._depended_on: set[UUID] = set()
        self._json: dict[UUID, str] = {}
        self._rows: dict[Table, dict[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._checkpoints: dict[tuple[str, str, int], Checkpoint] = {}
        #: The events this unit of work emitted, in order.
        self.emitted: list[Envelope] = []
        self._traceparents: dict[UUID, str] = {}
        #: What a handler read once and keeps for the rest of the unit of work, under a key of its own.
        self.memo: dict[object, Any] = {}
        self._now: datetime | None = None
        #: Take streams as this process keeps them, unread (the write's version check catches one
        #: another process changed). Off: ask the database about each, as a refusal needs.
        self.trust_cache = True
        #: Whether a stream was taken as kept, unread: a decision not written (a refusal) may rest on
        #: a stream another process has changed since.
        self.took_kept_streams = False

    def now(self) -> datetime:
        """The time of this unit of work: read once, so every decision in it agrees."""
        if self._now is None:
            self._now = self.clock.now()
        return self._now

    # --- streams ---------------------------------------------------------------------------------

    async def load(self, *stream_ids: UUID, verify: bool = False) -> None:
        """Read the streams not read yet: those this process keeps as it keeps them (the write checks
        they did not change), the others in one round trip. ``verify``: ask the database about the
        kept ones too — for a read that no write will check (a query answered from a stream)."""
        missing = list(dict.fromkeys(i for i in stream_ids if i not in self._streams))
        if missing:
            verify = verify or not self.trust_cache
            if not verify and any(i in self._cache for i in missing):
                self.took_kept_streams = True
            loaded = await self._store.load(missing, self._cache, self._model, verify=verify)
            for stream_id, snapshot in loaded.items():
                self._streams[stream_id] = Stream(snapshot, self._model)

    def adopt(self, snapshots: Mapping[UUID, StreamSnapshot[State]]) -> None:
        """Take streams read together with other things (an adapter's one query for a command): as
        if ``load`` had read them."""
        for stream_id, snapshot in snapshots.items():
            self._streams.setdefault(stream_id, Stream(snapshot, self._model))

    def cached(self, stream_id: UUID) -> StreamSnapshot[State] | None:
        """The stream as this process keeps it, if it does (for an adapter that reads streams with
        other things, asking whether each kept one is still at its version, as ``load`` with
        ``verify`` does); None when this unit of work does not trust what is kept."""
        return self._cache.get(stream_id) if self.trust_cache else None

    async def stream(self, stream_id: UUID) -> Stream[State]:
        await self.load(stream_id)
        return self._streams[stream_id]

    async def state(self, stream_id: UUID) -> State:
        """The stream's state, folded from its events (those recorded here included)."""
        return (await self.stream(stream_id)).state

    def loaded(self, stream_id: UUID) -> Stream[State]:
        """A stream this unit of work has read already."""
        return self._streams[stream_id]

    async def exclusive(self, key: object) -> None:
        """Wait until no other unit of work of this process holds ``key``, and hold it until this one
        is written or given up (``release``): for a stream that many would write at once."""
        if key not in self._held:
            await self._locks.acquire(key)
            self._held.append(key)

    def release(self) -> None:
        """Let go of what ``exclusive`` holds."""
        while self._held:
            self._locks.release(self._held.pop())

    def depend_on(self, stream_id: UUID) -> None:
        """Write only if this stream, read but maybe not changed here, is still as it was read: a
        decision about one case that rests on another's state (a duplicate's original)."""
        self._depended_on.add(stream_id)

    def record(self, event: Envelope, stored: str | None = None) -> bool:
        """Keep an event in its stream (read already); False when the stream held it already.
        ``stored``: the event's JSON as it came (a record's value), kept as it is."""
        added = self._streams[event.case_id].add(event)
        if added and stored is not None:
            self._json[event.event_id] = stored
        return added

    def emit(self, *events: Envelope) -> None:
        """New events of this service: kept in their streams (read already) and in the outbox, with
        the trace context they were emitted in (a request's span, an event handler's)."""
        traceparent = current_traceparent()
        for event in events:
            if self.record(event):
                self.emitted.append(event)
                if traceparent is not None:
                    self._traceparents[event.event_id] = traceparent

    def changed(self) -> list[Stream[State]]:
        """The streams that got new events here, in the order they were read."""
        return [stream for stream in self._streams.values() if stream.new]

    # --- projections and positions ---------------------------------------------------------------

    def put(self, table: Table, row: Mapping[str, Any]) -> None:
        """Upsert a projection row (the last put of a key wins)."""
        unknown = row.keys() - table.c.keys()
        if unknown:
            # It would be dropped without a word by the statement that writes the rows.
            raise ValueError(f"{table.name} has no column {sorted(unknown)}")
        self._rows.setdefault(table, {})[_key_of(table, row)] = dict(row)

    def pending(self, table: Table) -> list[dict[str, Any]]:
        """The rows of ``table`` this unit of work put and has not written yet."""
        return [row for row in self._rows.get(table, {}).values() if row is not None]

    def remove(self, table: Table, **key: Any) -> None:
        """Delete a projection row by its primary key, if there is one."""
        self._rows.setdefault(table, {})[_key_of(table, key)] = None

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._checkpoints[(checkpoint.consumer, checkpoint.topic, checkpoint.partition)] = checkpoint

    # --- writing ---------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Write everything at once; ``VersionConflict`` if a stream changed under it (nothing
        written, and what this process kept of the streams read here is forgotten)."""
        changes = self.changes()
        if changes.empty:
            self._keep_what_was_read()
            return
        try:
            await self._store.write(changes, self.now())
        except BaseException:
            self._cache.forget(self._streams)
            raise
        for stream in self._streams.values():
            written = stream.stream_id in changes.versions
            self._cache.put(stream.written(stream.version + 1) if written else stream.read())
        self._store.committed(changes.outbox, changes.traceparents)

    def rollback(self) -> None:
        """Nothing is written; the streams read stay cached as they were read."""
        self._cache.forget(stream_id for stream_id, stream in self._streams.items() if stream.new)

    def _keep_what_was_read(self) -> None:
        for stream in self._streams.values():
            if not stream.new:
                self._cache.put(stream.read())

    def changes(self) -> Changes:
        changes = Changes(
            rows=self._rows, checkpoints=list(self._checkpoints.values()), traceparents=self._traceparents
        )
        emitted = {event.event_id for event in self.emitted}
        for stream in self._streams.values():
            if stream.new or stream.stream_id in self._depended_on:
                changes.versions[stream.stream_id] = stream.version
            for event in stream.new:
                stored = self._json.get(event.event_id) or event.model_dump_json()
                changes.events.append((event, stored))
                if event.event_id in emitted:
                    self._json[event.event_id] = stored
        changes.outbox = [(event, self._json[event.event_id]) for event in self.emitted]
        return changes


def _key_of(table: Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        return tuple(row[column.name] for column in table.primary_key.columns)
    except KeyError as missing:
        raise ValueError(f"a row of {table.name} needs its primary key {missing}") from None
