"""A service's database: its engine and tables, how streams are read and changes written
(one round trip each on PostgreSQL), queries outside any transaction, and a count of the round
trips it makes (ADR 0012, ADR 0014)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, bindparam, delete, event, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.folding import State, StreamModel
from caseloop_events.runtime.migrations import Migrations, Upgrade
from caseloop_events.runtime.storage import (
    DEFAULT_POOL_SIZE,
    SQLITE_WRITE,
    RuntimeTables,
    create_engine,
    create_schema,
    insert_rows_ignoring_duplicates,
    session_factory,
    upsert_rows,
)
from caseloop_events.runtime.streams import StreamCache, StreamSnapshot
from caseloop_events.runtime.unit_of_work import Changes, VersionConflict

#: PostgreSQL runs (and commits) each statement of such a connection on its own: no BEGIN, no
#: COMMIT or ROLLBACK, each a round trip.
STATEMENTS_ON_THEIR_OWN = {"isolation_level": "AUTOCOMMIT"}

#: The SQLSTATE ``caseloop_require_versions`` raises: a stream changed since it was read.
VERSION_CONFLICT_SQLSTATE = "40001"

#: Told the emitted events of a write (with their JSON) and the trace context each was emitted in.
CommitListener = Callable[[Sequence[tuple[Envelope, str]], Mapping[UUID, str]], None]


class Database:
    """A service's database: its engine, its tables (own and runtime), how its streams are read
    and its units of work written."""

    def __init__(
        self,
        url: str,
        tables: RuntimeTables,
        topic: str,
        clock: Clock,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrations: Migrations | None = None,
    ) -> None:
        self.url = url
        #: The service's migration environment; none for a service made up by a test of the runtime.
        self.migrations = migrations
        self.metadata = tables.metadata
        self.tables = tables
        self.engine: AsyncEngine = create_engine(url, pool_size=pool_size)
        self.sessions = session_factory(self.engine)
        self.topic = topic
        self.clock = clock
        self._listeners: list[CommitListener] = []
        #: Set by a replay, the only writer of the database it fills: on PostgreSQL the events are
        #: then copied in (COPY, in the transaction of the rest), not inserted with a conflict check.
        self.sole_writer = False
        #: Statements sent to the database (a transaction's BEGIN and COMMIT included): each a
        #: round trip to a server, what a unit of work costs (docs/performance.md).
        self.round_trips = 0
        self._count_round_trips()

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _count_round_trips(self) -> None:
        def statement(*_args: Any) -> None:
            self.round_trips += 1

        def transaction_edge(connection: Any, *_args: Any) -> None:
            # BEGIN, COMMIT and ROLLBACK are statements of their own, but not on a connection whose
            # statements run on their own (no transaction to begin or end: nothing is sent).
            if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                self.round_trips += 1

        event.listen(self.engine.sync_engine, "before_cursor_execute", statement)
        for name in ("begin", "commit", "rollback"):
            event.listen(self.engine.sync_engine, name, transaction_edge)

    async def create_schema(self) -> Upgrade | None:
        """Bring the schema to head (ADR 0016): an empty database is created and stamped, one made
        before migrations stamped at the first revision and upgraded, a versioned one upgraded.
        Without a migration environment (a test's made-up service): the missing tables created."""
        if self.migrations is None:
            await create_schema(self.engine, self.metadata)
            return None
        async with self.engine.begin() as connection:
            return await connection.run_sync(self.migrations.bring_to_head)

    async def require_schema_at_head(self) -> None:
        """Raise ``SchemaNotAtHead`` unless the schema is at head (production never migrates itself)."""
        if self.migrations is not None:
            async with self.engine.connect() as connection:
                await connection.run_sync(self.migrations.require_head)

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the emitted events (and their JSON) of every write that emitted any."""
        self._listeners.append(listener)

    def committed(self, emitted: Sequence[tuple[Envelope, str]], traceparents: Mapping[UUID, str]) -> None:
        if emitted:
            for listener in self._listeners:
                listener(emitted, traceparents)

    # --- reading ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for queries. On PostgreSQL its statements run outside a transaction: a query
        then costs one round trip, not three (BEGIN, the query, ROLLBACK). A session that reads
        several times sees each statement's own snapshot, as READ COMMITTED would show it anyway."""
        async with self.sessions() as session:
            if self.is_postgresql:
                await session.connection(execution_options=STATEMENTS_ON_THEIR_OWN)
            yield session

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a write that is a single statement, atomic by itself: on PostgreSQL it
        commits on its own (one round trip instead of three). Elsewhere an ordinary transaction."""
        if self.is_postgresql:
            async with self.engine.connect() as connection:
                yield await connection.execution_options(**STATEMENTS_ON_THEIR_OWN)
        else:
            async with self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a writing transaction, for a service's operational tables (idempotency keys,
        feedback deliveries): streams, projections and the outbox are written by units of work."""
        async with self.sessions() as session, session.begin():
            await session.connection(execution_options=SQLITE_WRITE)
            yield session

    async def case_events(self, case_id: UUID) -> list[Envelope]:
        """A stream's recorded events in causal order, read outside any write (queries)."""
        log = self.tables.case_events
        async with self.reading() as session:
            rows = await session.scalars(select(log.c.envelope).where(log.c.case_id == str(case_id)))
            return causal_order(Envelope.model_validate_json(row) for row in rows)

    async def load(
        self,
        stream_ids: Sequence[UUID],
        cache: StreamCache[State],
        model: StreamModel[State],
        *,
        verify: bool = False,
    ) -> dict[UUID, StreamSnapshot[State]]:
        """Each stream: as cached, or as stored (one statement on PostgreSQL for all those not cached).
        ``verify``: ask whether each cached stream is still at its version too (reading the events of
        those that changed), for an answer that no write of this unit of work will check."""
        cached = {i: snapshot for i in stream_ids if (snapshot := cache.get(i)) is not None}
        if not verify:
            missing = [i for i in stream_ids if i not in cached]
            if not missing:
                return cached
            return {**cached, **(await self.load(missing, cache, model, verify=True))}
        if self.is_postgresql:
            versions, logs = await self._load_postgresql(stream_ids, cached)
        else:
            versions, logs = await self._load_sqlite(stream_ids, cached)
        return snapshots_of(stream_ids, versions, logs, cached)

    async def _load_postgresql(
        self, stream_ids: Sequence[UUID], cached: dict[UUID, StreamSnapshot[Any]]
    ) -> tuple[dict[UUID, int], dict[UUID, list[str]]]:
        ids = [str(i) for i in stream_ids]
        known = [cached[i].version if i in cached else -1 for i in stream_ids]
        versions: dict[UUID, int] = {}
        logs: dict[UUID, list[str]] = {}
        async with self.driver() as connection:
            for stream_id, version, envelope in await connection.fetch(LOAD_STREAMS, ids, known):
                key = UUID(stream_id)
                versions[key] = version
                if envelope is not None:
                    logs.setdefault(key, []).append(envelope)
        return versions, logs

    async def _load_sqlite(
        self, stream_ids: Sequence[UUID], cached: dict[UUID, StreamSnapshot[Any]]
    ) -> tuple[dict[UUID, int], dict[UUID, list[str]]]:
        streams, log = self.tables.case_streams, self.tables.case_events
        ids = [str(i) for i in stream_ids]
        async with self.sessions() as session, session.begin():  # one snapshot for both reads
            versions = {
                UUID(i): v
                for i, v in await session.execute(
                    select(streams.c.case_id, streams.c.version).where(streams.c.case_id.in_(ids))
                )
            }
            stale = [str(i) for i in stream_ids if i not in cached or cached[i].version != versions.get(i, 0)]
            logs: dict[UUID, list[str]] = {}
            if stale:
                rows = await session.execute(select(log.c.case_id, log.c.envelope).where(log.c.case_id.in_(stale)))
                for stream_id, envelope in rows:
                    logs.setdefault(UUID(stream_id), []).append(envelope)
        return versions, logs

    # --- writing ---------------------------------------------------------------------------------

    async def write(self, changes: Changes, now: datetime) -> None:
        """Write a unit of work's changes at once, or nothing and raise ``VersionConflict``."""
        if self.is_postgresql:
            await self._write_postgresql(changes, now)
        else:
            await self._write_sqlite(changes, now)

    async def _write_postgresql(self, changes: Changes, now: datetime) -> None:
        shape = tuple(
            (table, tuple(_columns_of(rows)) if _has_upserts(rows) else (), _has_deletes(rows))
            for table, rows in sorted(changes.rows.items(), key=lambda item: item[0].name)
        )
        statement = _write_statement(self.tables, shape)
        copied = self.sole_writer and bool(changes.events)
        parameters = _write_parameters(self.tables, self.topic, changes, shape, now, events=not copied)
        async with self.driver() as connection:
            try:
                if copied:
                    async with connection.transaction():
                        await connection.copy_records_to_table(
                            "case_events",
                            records=[tuple(_logged(e, j).values()) for e, j in changes.events],
                            columns=_EVENT_COLUMNS,
                        )
                        await connection.fetchval(statement, *parameters)
                else:
                    await connection.fetchval(statement, *parameters)
            except Exception as error:
                if getattr(error, "sqlstate", None) == VERSION_CONFLICT_SQLSTATE and "caseloop:" in str(error):
                    raise VersionConflict(str(error)) from error
                raise

    async def _write_sqlite(self, changes: Changes, now: datetime) -> None:
        tables = self.tables
        async with self.sessions() as session, session.begin():
            await session.connection(execution_options=SQLITE_WRITE)
            if changes.versions:
                ids = [str(i) for i in changes.versions]
                stored = dict(
                    (
                        await session.execute(
                            select(tables.case_streams.c.case_id, tables.case_streams.c.version).where(
                                tables.case_streams.c.case_id.in_(ids)
                            )
                        )
                    ).all()
                )
                changed = [i for i, v in changes.versions.items() if stored.get(str(i), 0) != v]
                if changed:
                    raise VersionConflict(f"caseloop: {len(changed)} stream(s) were written by someone else")
                await upsert_rows(
                    session,
                    tables.case_streams,
                    [{"case_id": str(i), "version": v + 1} for i, v in sorted(changes.versions.items())],
                    ("case_id",),
                )
            await insert_rows_ignoring_duplicates(
                session, tables.case_events, [_logged(e, j) for e, j in changes.events]
            )
            if changes.outbox:
                await session.execute(
                    tables.outbox.insert(),
                    [_outboxed(e, j, self.topic, now, changes.traceparents) for e, j in changes.outbox],
                )
            for table, rows in sorted(changes.rows.items(), key=lambda item: item[0].name):
                key = tuple(column.name for column in table.primary_key.columns)
                upserts = [row for row in rows.values() if row is not None]
                await upsert_rows(session, table, upserts, key)
                for gone in [k for k, row in rows.items() if row is None]:
                    await session.execute(
                        delete(table).where(*(table.c[name] == value for name, value in zip(key, gone, strict=True)))
                    )
            if changes.checkpoints:
                await upsert_rows(
                    session,
                    tables.checkpoints,
                    [_checkpoint_row(c, now) for c in changes.checkpoints],
                    ("consumer", "topic", "partition"),
                )

    async def mark_published(self, event_ids: Sequence[str], now: datetime) -> None:
        """The outbox rows of these events reached the broker (one statement, on its own)."""
        outbox = self.tables.outbox
        if not event_ids:
            return
        if self.is_postgresql:
            async with self.driver() as connection:
                await connection.execute(_MARK_PUBLISHED, list(event_ids), now)
            return
        async with self.one_statement() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.event_id.in_(bindparam("ids", expanding=True)))
                .values(published_at=bindparam("now")),
                {"ids": list(event_ids), "now": now},
            )

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The pooled asyncpg connection itself (PostgreSQL only), outside any transaction: the hot
        statements go to it straight (SQLAlchemy's layers cost more CPU than these statements). A
        connection that failed is dropped from the pool, not handed out again."""
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            try:
                self.round_trips += 1
                yield raw.driver_connection
            except (OSError, DBAPIError, ConnectionError) as error:
                await connection.invalidate(error)
                raise
            except Exception as error:
                if _connection_broken(error):
                    await connection.invalidate(error)
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


def snapshots_of(
    stream_ids: Sequence[UUID],
    versions: dict[UUID, int],
    logs: dict[UUID, list[str]],
    cached: dict[UUID, StreamSnapshot[State]],
) -> dict[UUID, StreamSnapshot[State]]:
    """The streams as read: each at its version (0: none yet), from the events read for it, or as
    cached when no events were read because the cached version is the one stored."""
    loaded: dict[UUID, StreamSnapshot[State]] = {}
    for stream_id in stream_ids:
        version = versions.get(stream_id, 0)
        snapshot = cached.get(stream_id)
        if snapshot is not None and snapshot.version == version and stream_id not in logs:
            loaded[stream_id] = snapshot
            continue
        events = causal_order(Envelope.model_validate_json(text) for text in logs.get(stream_id, ()))
        loaded[stream_id] = StreamSnapshot(stream_id, version, tuple(events))
    return loaded


#: Each stream's version and, unless the caller keeps it at that version, its events: one row per
#: event, or one with no event. $1: the stream ids; $2: the versions kept (-1: none kept).
LOAD_STREAMS = """
SELECT r.id, COALESCE(s.version, 0), e.envelope
FROM unnest($1::varchar[], $2::int[]) AS r(id, known)
LEFT JOIN case_streams s ON s.case_id = r.id
LEFT JOIN case_events e ON e.case_id = r.id AND COALESCE(s.version, 0) <> r.known
"""


def _connection_broken(error: BaseException) -> bool:
    """asyncpg's errors for a connection that is gone (not a statement that failed on a good one)."""
    return type(error).__name__ in {"ConnectionDoesNotExistError", "InterfaceError", "ConnectionFailureError"}


_MARK_PUBLISHED = "UPDATE outbox SET published_at = $2 WHERE event_id = ANY($1::varchar[])"

#: One projection table's part in a write: its table, the columns of its upserts (none: no upsert)
#: and whether it deletes rows. Together with the runtime's own tables they make the statement.
TablePart = tuple[Table, tuple[str, ...], bool]


def _has_upserts(rows: dict[tuple[Any, ...], dict[str, Any] | None]) -> bool:
    return any(row is not None for row in rows.values())


def _has_deletes(rows: dict[tuple[Any, ...], dict[str, Any] | None]) -> bool:
    return any(row is None for row in rows.values())


def _columns_of(rows: dict[tuple[Any, ...], dict[str, Any] | None]) -> list[str]:
    upserts = [row for row in rows.values() if row is not None]
    columns = list(upserts[0])
    if any(row.keys() != upserts[0].keys() for row in upserts[1:]):
        raise ValueError("every row put into a table in one unit of work names the same columns")
    return columns


@functools.cache
def _pg_type(table: Table, column: str) -> str:
    return str(table.c[column].type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _unnest(table: Table, columns: Sequence[str], first: int) -> str:
    return ", ".join(f"${first + n}::{_pg_type(table, c)}[]" for n, c in enumerate(columns))


_EVENT_COLUMNS = ("event_id", "case_id", "type", "producer", "occurred_at", "envelope")
_OUTBOX_COLUMNS = ("event_id", "case_id", "type", "topic", "envelope", "created_at", "traceparent")
_CHECKPOINT_COLUMNS = ("consumer", "topic", "partition", "next_offset", "last_event_id", "updated_at")


@functools.cache
def _write_statement(tables: RuntimeTables, shape: tuple[TablePart, ...]) -> str:
    """The one statement that writes a unit of work on PostgreSQL: data-modifying CTEs that run
    to completion together, and a final SELECT that raises (undoing all of them) unless every
    stream's version was the one read. Built once per shape, then prepared once per connection."""
    parts: list[str] = []
    n = 1

    def unnest(table: Table, columns: Sequence[str]) -> str:
        nonlocal n
        text = _unnest(table, columns, n)
        n += len(columns)
        return text

    versions = unnest(tables.case_streams, ("case_id", "version"))
    parts.append(
        f"s AS (INSERT INTO case_streams AS t (case_id, version) SELECT * FROM unnest({versions}) "
        "ON CONFLICT (case_id) DO UPDATE SET version = excluded.version WHERE t.version = excluded.version - 1 "
        "RETURNING 1)"
    )
    events = unnest(tables.case_events, _EVENT_COLUMNS)
    parts.append(
        f"e AS (INSERT INTO case_events ({', '.join(_EVENT_COLUMNS)}) SELECT * FROM unnest({events}) "
        "ON CONFLICT DO NOTHING)"
    )
    outbox_columns = ", ".join(_OUTBOX_COLUMNS)
    outboxed = unnest(tables.outbox, _OUTBOX_COLUMNS)
    parts.append(
        f"o AS (INSERT INTO outbox ({outbox_columns}) SELECT {outbox_columns} FROM unnest({outboxed}) "
        f"WITH ORDINALITY AS u({outbox_columns}, n) ORDER BY n)"
    )
    updated = ", ".join(f"{c} = excluded.{c}" for c in _CHECKPOINT_COLUMNS[3:])
    parts.append(
        f"c AS (INSERT INTO consumer_checkpoints AS t ({', '.join(_CHECKPOINT_COLUMNS)}) "
        f"SELECT * FROM unnest({unnest(tables.checkpoints, _CHECKPOINT_COLUMNS)}) "
        f"ON CONFLICT (consumer, topic, partition) DO UPDATE SET {updated})"
    )
    for index, (table, columns, deletes) in enumerate(shape):
        key = [column.name for column in table.primary_key.columns]
        if columns:
            others = [c for c in columns if c not in key]
            action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others) if others else "DO NOTHING"
            rows = unnest(table, columns)
            parts.append(
                f"p{index} AS (INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({rows}) "
                f"ON CONFLICT ({', '.join(key)}) {action})"
            )
        if deletes:
            matched = " AND ".join(f"{table.name}.{c} = k.{c}" for c in key)
            keys = unnest(table, key)
            parts.append(
                f"d{index} AS (DELETE FROM {table.name} USING unnest({keys}) AS k({', '.join(key)}) WHERE {matched})"
            )
    return f"WITH {', '.join(parts)} SELECT caseloop_require_versions((SELECT count(*) FROM s), ${n}::bigint)"


def _write_parameters(
    tables: RuntimeTables,
    topic: str,
    changes: Changes,
    shape: tuple[TablePart, ...],
    now: datetime,
    *,
    events: bool = True,
) -> list[Any]:
    """The statement's parameters; with ``events=False`` it inserts no event (they are copied in)."""

    def columns_of(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
        return [[row[name] for row in rows] for name in names]

    versions = sorted(changes.versions.items())  # one lock order for every writer: no deadlock between two
    parameters: list[Any] = [[str(i) for i, _ in versions], [v + 1 for _, v in versions]]
    parameters += columns_of([_logged(e, j) for e, j in changes.events] if events else [], _EVENT_COLUMNS)
    parameters += columns_of(
        [_outboxed(e, j, topic, now, changes.traceparents) for e, j in changes.outbox], _OUTBOX_COLUMNS
    )
    parameters += columns_of([_checkpoint_row(c, now) for c in changes.checkpoints], _CHECKPOINT_COLUMNS)
    for table, columns, deletes in shape:
        rows = changes.rows[table]
        ordered = sorted(rows.items(), key=lambda item: tuple(map(str, item[0])))
        if columns:
            parameters += columns_of([row for _, row in ordered if row is not None], columns)
        if deletes:
            gone = [key for key, row in ordered if row is None]
            parameters += [[key[n] for key in gone] for n in range(len(table.primary_key.columns))]
    parameters.append(len(versions))
    return parameters


def _logged(event: Envelope, stored: str) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "case_id": str(event.case_id),
        "type": event.type,
        "producer": event.producer.value,
        "occurred_at": event.occurred_at,
        "envelope": stored,
    }


def _outboxed(
    event: Envelope, stored: str, topic: str, now: datetime, traceparents: Mapping[UUID, str]
) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "case_id": str(event.case_id),
        "type": event.type,
        "topic": topic,
        "envelope": stored,
        "created_at": now,
        "traceparent": traceparents.get(event.event_id),
    }


def _checkpoint_row(checkpoint: Any, now: datetime) -> dict[str, Any]:
    return {
        "consumer": checkpoint.consumer,
        "topic": checkpoint.topic,
        "partition": checkpoint.partition,
        "next_offset": checkpoint.next_offset,
        "last_event_id": checkpoint.last_event_id,
        "updated_at": now,
    }
