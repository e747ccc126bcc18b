"""The unit of work: one database transaction holding a projection change, the events it
produced (outbox) and the consumer position (DESIGN.md §3)."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.runtime.storage import (
    SQLITE_WRITE,
    RuntimeTables,
    create_engine,
    create_schema,
    dialect_insert,
    insert_row_ignoring_duplicates,
    insert_rows_ignoring_duplicates,
    session_factory,
    upsert_rows,
)


async def _case_events(session: AsyncSession, tables: RuntimeTables, case_id: UUID) -> list[Envelope]:
    log = tables.case_events
    rows = await session.execute(select(log.c.envelope).where(log.c.case_id == str(case_id)))
    return causal_order(Envelope.model_validate_json(row) for (row,) in rows)


@functools.cache
def _lock_statement(dialect_name: str, streams: Table) -> Any:
    return dialect_insert(dialect_name, streams).on_conflict_do_update(
        index_elements=[streams.c.case_id], set_={"version": streams.c.version + 1}
    )


def _logged(event: Envelope) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "case_id": str(event.case_id),
        "type": event.type,
        "producer": event.producer.value,
        "occurred_at": event.occurred_at,
        "envelope": event.model_dump_json(),
    }


class CaseLogs(OrderedDict[UUID, list[Envelope]]):
    """Case logs as they stand in the database, parsed and in causal order, for at most
    ``max_cases`` cases (the least recently used go first).

    Only a writer that has the database to itself may keep them across transactions — a replay
    into a database of its own — and it must drop them all when a transaction fails, since they
    hold what that transaction recorded."""

    def __init__(self, max_cases: int) -> None:
        super().__init__()
        self.max_cases = max_cases

    def __getitem__(self, case_id: UUID) -> list[Envelope]:
        log = super().__getitem__(case_id)
        self.move_to_end(case_id)
        return log

    def __setitem__(self, case_id: UUID, log: list[Envelope]) -> None:
        super().__setitem__(case_id, log)
        self.move_to_end(case_id)
        while len(self) > self.max_cases:
            self.popitem(last=False)


#: PostgreSQL runs (and commits) each statement of such a connection on its own: no BEGIN, no
#: COMMIT or ROLLBACK, each a round trip.
STATEMENTS_ON_THEIR_OWN = {"isolation_level": "AUTOCOMMIT"}


class UnitOfWork:
    """What a handler may touch during one transaction."""

    def __init__(
        self,
        session: AsyncSession,
        tables: RuntimeTables,
        topic: str,
        clock: Clock,
        kept_logs: CaseLogs | None = None,
    ) -> None:
        self.session = session
        self.tables = tables
        self.clock = clock
        self._topic = topic
        self.emitted: list[Envelope] = []
        # The logs of the cases this transaction locked, kept up to date as it records events:
        # nobody else writes a locked case's log, so it is read and parsed once per transaction
        # (a consumer batch handles many events of a case in one). A writer that has the database
        # to itself passes the logs it keeps across its transactions (``CaseLogs``): no lock and no
        # read for those.
        self._locked_logs: dict[UUID, list[Envelope]] = kept_logs if kept_logs is not None else {}
        #: What a handler read once and keeps for the rest of the transaction, under a key of its
        #: own: rows only this service writes, so the handler that writes one drops its entry.
        self.memo: dict[object, Any] = {}

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def lock_case(self, case_id: UUID) -> list[Envelope]:
        """Lock the case for this transaction and return its recorded events in causal order."""
        if case_id not in self._locked_logs:
            # One statement: the upsert takes the row lock whether it inserts or updates.
            lock = _lock_statement(self.dialect, self.tables.case_streams)
            await self.session.execute(lock, {"case_id": str(case_id), "version": 1})
            self._locked_logs[case_id] = await _case_events(self.session, self.tables, case_id)
        return list(self._locked_logs[case_id])

    async def case_events(self, case_id: UUID) -> list[Envelope]:
        """The case's recorded events in causal order (of a case this transaction did not lock:
        as committed when read)."""
        if case_id in self._locked_logs:
            return list(self._locked_logs[case_id])
        return await _case_events(self.session, self.tables, case_id)

    async def record(self, event: Envelope) -> None:
        """Keep an event in the case log (idempotent: an event the locked log holds is not written again)."""
        log = self._locked_logs.get(event.case_id)
        if log is not None and any(kept.event_id == event.event_id for kept in log):
            return
        await insert_row_ignoring_duplicates(self.session, self.tables.case_events, _logged(event))
        self._remember([event])

    def _remember(self, events: Sequence[Envelope]) -> None:
        """Add what was just recorded to the locked logs it belongs to (one ordering per case)."""
        by_case: dict[UUID, list[Envelope]] = {}
        for event in events:
            if event.case_id in self._locked_logs:
                by_case.setdefault(event.case_id, []).append(event)
        for case_id, new in by_case.items():
            log = self._locked_logs[case_id]
            known = {kept.event_id for kept in log}
            fresh = [event for event in new if event.event_id not in known]
            if fresh:
                self._locked_logs[case_id] = causal_order([*log, *fresh])

    async def record_many(self, events: Sequence[Envelope]) -> None:
        """Keep many events in the case log with one statement (idempotent): what a replay does."""
        if events:
            rows = [_logged(event) for event in events]
            await insert_rows_ignoring_duplicates(self.session, self.tables.case_events, rows)
            self._remember(events)

    async def emit(self, *events: Envelope) -> None:
        """Append new events of this service: case log, outbox, and marked processed, so that
        reading them back from our own topic is a no-op. One statement per table for them all;
        the outbox rows take their positions in the order given."""
        if not events:
            return
        now = self.clock.now()
        logged = [_logged(event) for event in events]
        await insert_rows_ignoring_duplicates(self.session, self.tables.case_events, logged)
        self._remember(events)
        outbox_rows = [
            {
                **{key: row[key] for key in ("event_id", "case_id", "type", "envelope")},
                "topic": self._topic,
                "created_at": now,
            }
            for row in logged
        ]
        await self.session.execute(self.tables.outbox.insert(), outbox_rows)
        await self.mark_processed_many([event.event_id for event in events])
        self.emitted.extend(events)

    async def is_processed(self, event_id: UUID) -> bool:
        table = self.tables.processed_events
        found = await self.session.execute(select(table.c.event_id).where(table.c.event_id == str(event_id)))
        return found.first() is not None

    async def processed_among(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these events were processed before."""
        table = self.tables.processed_events
        found = await self.session.scalars(
            select(table.c.event_id).where(table.c.event_id.in_([str(i) for i in event_ids]))
        )
        return {UUID(i) for i in found}

    async def mark_processed_many(self, event_ids: Sequence[UUID]) -> None:
        if event_ids:
            now = self.clock.now()
            rows = [{"event_id": str(i), "processed_at": now} for i in event_ids]
            table = self.tables.processed_events
            await insert_rows_ignoring_duplicates(self.session, table, rows)

    async def mark_processed(self, event_id: UUID) -> None:
        await insert_row_ignoring_duplicates(
            self.session, self.tables.processed_events, {"event_id": str(event_id), "processed_at": self.clock.now()}
        )

    async def save_checkpoint(self, consumer: str, topic: str, partition: int, next_offset: int) -> None:
        await self.save_checkpoints(consumer, {(topic, partition): next_offset})

    async def save_checkpoints(self, consumer: str, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Each (topic, partition)'s next offset for ``consumer``, with one statement."""
        now = self.clock.now()
        rows = [
            {"consumer": consumer, "topic": topic, "partition": partition, "next_offset": offset, "updated_at": now}
            for (topic, partition), offset in next_offsets.items()
        ]
        await upsert_rows(self.session, self.tables.checkpoints, rows, ("consumer", "topic", "partition"))


class Database:
    """A service's database: its engine, its tables (own and runtime) and its transactions."""

    def __init__(self, url: str, tables: RuntimeTables, topic: str, clock: Clock) -> None:
        self.url = url
        self.metadata = tables.metadata
        self.tables = tables
        self.engine: AsyncEngine = create_engine(url)
        self.sessions = session_factory(self.engine)
        self.topic = topic
        self.clock = clock
        self._after_commit: list[Callable[[list[Envelope]], None]] = []

    async def create_schema(self) -> None:
        await create_schema(self.engine, self.metadata)

    def on_commit(self, listener: Callable[[list[Envelope]], None]) -> None:
        """Call ``listener`` with the events of every committed transaction that emitted any."""
        self._after_commit.append(listener)

    @asynccontextmanager
    async def transaction(self, kept_logs: CaseLogs | None = None) -> AsyncIterator[UnitOfWork]:
        """Everything inside commits together or not at all. ``kept_logs``: see ``CaseLogs``."""
        async with self.sessions() as session, session.begin():
            await session.connection(execution_options=SQLITE_WRITE)
            uow = UnitOfWork(session, self.tables, self.topic, self.clock, kept_logs)
            yield uow
        if uow.emitted:
            for listener in self._after_commit:
                listener(uow.emitted)

    async def case_events(self, case_id: UUID) -> list[Envelope]:
        """A case's recorded events in causal order, read outside any writing transaction (queries)."""
        async with self.reading() as session:
            return await _case_events(session, self.tables, case_id)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for queries. On PostgreSQL its statements run outside a transaction: a query
        then costs one round trip to the server, not three (BEGIN, the query, ROLLBACK) — each one
        a context switch on a busy machine (docs/performance.md). A session that reads several
        times sees each statement's own snapshot, as READ COMMITTED would show it anyway."""
        async with self.sessions() as session:
            if self.engine.dialect.name == "postgresql":
                await session.connection(execution_options=STATEMENTS_ON_THEIR_OWN)
            yield session

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a write that is a single statement, atomic by itself: on PostgreSQL it
        commits on its own, one round trip instead of three (BEGIN, the statement, COMMIT). Elsewhere
        it is an ordinary transaction (deferred: one statement does not read before it writes)."""
        if self.engine.dialect.name == "postgresql":
            async with self.engine.connect() as connection:
                yield await connection.execution_options(**STATEMENTS_ON_THEIR_OWN)
        else:
            async with self.engine.begin() as connection:
                yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()
