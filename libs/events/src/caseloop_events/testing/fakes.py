"""Fakes of the runtime for fast unit tests: a service's handlers run as the runtime runs them —
streams loaded, events recorded, handlers called, changed streams projected, everything written at
once with the version check — on an in-memory store instead of a database and a broker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar, cast
from uuid import UUID

from sqlalchemy import Table

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.folding import State, StreamModel
from caseloop_events.runtime.consumer import Incoming
from caseloop_events.runtime.service import ServiceDefinition, react, run_command, write
from caseloop_events.runtime.streams import StreamCache, StreamSnapshot
from caseloop_events.runtime.unit_of_work import Changes, Deps, UnitOfWork, VersionConflict

T = TypeVar("T")


class InMemoryStore(Generic[State]):
    """Streams, projection rows and the outbox of one service, in memory."""

    def __init__(self, topic: str = "test.topic") -> None:
        self.topic = topic
        self.streams: dict[UUID, tuple[int, list[Envelope]]] = {}
        self.tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        #: The events emitted, in the order their writes committed (what the relay would publish).
        self.published: list[Envelope] = []
        self.checkpoints: dict[tuple[str, str, int], int] = {}
        self.writes = 0

    async def load(
        self,
        stream_ids: Sequence[UUID],
        cache: StreamCache[State],
        model: StreamModel[State],
        *,
        verify: bool = False,
    ) -> dict[UUID, StreamSnapshot[State]]:
        return {i: StreamSnapshot(i, *self._version_and_events(i)) for i in stream_ids}

    def _version_and_events(self, stream_id: UUID) -> tuple[int, tuple[Envelope, ...]]:
        version, events = self.streams.get(stream_id, (0, []))
        return version, tuple(causal_order(events))

    async def write(self, changes: Changes, now: datetime) -> None:
        changed = [i for i, v in changes.versions.items() if self.streams.get(i, (0, []))[0] != v]
        if changed:
            raise VersionConflict(f"{len(changed)} stream(s) were written by someone else")
        self.writes += 1
        for stream_id, version in changes.versions.items():
            self.streams[stream_id] = (version + 1, self.streams.get(stream_id, (0, []))[1])
        for event, _stored in changes.events:
            self.streams.setdefault(event.case_id, (1, []))[1].append(event)
        for table, rows in changes.rows.items():
            kept = self.tables.setdefault(table.name, {})
            for key, row in rows.items():
                if row is None:
                    kept.pop(key, None)
                else:
                    kept[key] = dict(row)
        for checkpoint in changes.checkpoints:
            self.checkpoints[(checkpoint.consumer, checkpoint.topic, checkpoint.partition)] = checkpoint.next_offset

    def committed(self, emitted: Sequence[tuple[Envelope, str]], traceparents: Mapping[UUID, str]) -> None:
        self.published.extend(event for event, _ in emitted)

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """The projection rows of a table, in primary-key order."""
        kept = self.tables.get(table.name, {})
        return [kept[key] for key in sorted(kept, key=lambda k: tuple(map(str, k)))]

    def row(self, table: Table, *key: Any) -> dict[str, Any] | None:
        return self.tables.get(table.name, {}).get(tuple(key))


class OutOfReach(Exception):
    """A handler reached a dependency the in-memory store cannot stand in for (a query adapter that
    reads the database directly): what depends on it is tested on a database, in the integration tests."""


class _Unanswerable:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> NoReturn:
        raise OutOfReach(f"{self._name}.{attribute} reads the database: out of reach of the in-memory store")


def out_of_reach(kind: type[T]) -> T:
    """A stand-in for a dependency of ``kind`` that reads the database directly (a service's query
    adapter), for tests of handlers that do not reach it: any use raises ``OutOfReach``, so a test
    that does reach it fails saying so, instead of answering from an empty database."""
    return cast(T, _Unanswerable(kind.__name__))


class FakeUnitOfWork(UnitOfWork[Deps, State]):
    """A unit of work on an ``InMemoryStore``: what a handler sees, without a database."""

    def __init__(self, store: InMemoryStore[State], model: StreamModel[State], deps: Deps, clock: Clock) -> None:
        super().__init__(store, model, StreamCache(0), deps, clock)


class FakeService(Generic[Deps, State]):
    """A service's definition run on an ``InMemoryStore``: its commands and events handled, its
    streams projected and written, as the runtime does it — with no database and no broker.

    ``store`` is given when ``deps`` read it too (a service's in-memory query adapter answering
    from the rows its handlers write); otherwise the service has a store of its own."""

    def __init__(
        self,
        definition: ServiceDefinition[Any, Deps, State],
        deps: Deps,
        clock: Clock,
        store: InMemoryStore[State] | None = None,
    ) -> None:
        self.definition = definition
        self.deps = deps
        self.clock = clock
        self.store: InMemoryStore[State] = store if store is not None else InMemoryStore()

    def unit_of_work(self) -> FakeUnitOfWork[Deps, State]:
        return FakeUnitOfWork(self.store, self.definition.model, self.deps, self.clock)

    async def handle(self, command: object) -> Any:
        """Handle a command as an HTTP request would; returns what its handler returns."""
        return await run_command(self.definition, self.unit_of_work, command)

    async def take(self, *events: Envelope) -> list[Envelope]:
        """Handle events read from the log, as one poll; returns the events the service emitted."""
        before = len(self.store.published)
        wanted = [e for e in events if e.type in self.definition.event_types]
        uow = self.unit_of_work()
        await react(self.definition, uow, [Incoming("log", 0, n, e, e.model_dump_json()) for n, e in enumerate(wanted)])
        await write(self.definition, uow)
        return self.store.published[before:]

    async def replay(self, *events: Envelope) -> None:
        """Write events the log holds already as a replay writes them (``Service.rebuild``): recorded
        in their streams and projected, no handler called, nothing emitted — the history a test starts
        from, such as the service's own earlier events, which no consumer poll of its brings."""
        wanted = [e for e in events if e.type in self.definition.event_types]
        uow = self.unit_of_work()
        await uow.load(*(e.case_id for e in wanted))
        for event in wanted:
            uow.record(event, event.model_dump_json())
        await write(self.definition, uow)

    async def state(self, stream_id: UUID) -> State:
        """The stream's state as stored."""
        return await self.unit_of_work().state(stream_id)

    def events_of(self, stream_id: UUID) -> list[Envelope]:
        return list(self.store.streams.get(stream_id, (0, []))[1])
