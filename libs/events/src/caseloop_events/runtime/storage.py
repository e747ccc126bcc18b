"""The tables every service keeps beside its own (outbox, checkpoints, stream versions, case log)
and the engine set-up for the embedded SQLite default and for PostgreSQL."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

# SQLite only gives an autoincrementing key to INTEGER PRIMARY KEY.
BigAutoId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend: SQLite keeps no offset, so it comes back naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class RuntimeTables:
    """The runtime's tables, defined on the service's own metadata."""

    metadata: MetaData
    outbox: Table
    checkpoints: Table
    case_streams: Table
    case_events: Table
    personal_data_reads: Table


#: The runtime's table a replay rebuilds: the case log (which is also the record of the events
#: handled: an event is handled once it is in its stream). Checkpoints (where each reader stands)
#: and stream versions (how often a stream was written) differ between a live database and a
#: rebuilt one by nature; the outbox is the event store itself.
RUNTIME_PROJECTIONS: dict[str, frozenset[str]] = {"case_events": frozenset()}

#: The runtime table a promotion must carry over from the live database: the service's own events.
OUTBOX_TABLE = "outbox"

#: The audit trail of reads of personal data: no event records a read, so no replay rebuilds it;
#: a promotion carries it over like the outbox.
PERSONAL_DATA_READS_TABLE = "personal_data_reads"


def define_runtime_tables(metadata: MetaData) -> RuntimeTables:
    """Add the runtime's tables to a service's metadata (once, where the service defines its own)."""
    outbox = Table(
        "outbox",
        metadata,
        Column("position", BigAutoId, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("case_id", String(36), nullable=False, index=True),
        Column("type", String(80), nullable=False),
        Column("topic", String(120), nullable=False),
        Column("envelope", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True),
        Column("traceparent", Text, nullable=True),
    )
    Index(
        "ix_outbox_unpublished",
        outbox.c.position,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    checkpoints = Table(
        "consumer_checkpoints",
        metadata,
        Column("consumer", String(80), primary_key=True),
        Column("topic", String(120), primary_key=True),
        Column("partition", Integer, primary_key=True),
        Column("next_offset", BigInteger, nullable=False),
        # The event id of the record just before next_offset, when it is an event: at start the
        # consumer checks the broker still holds that record there (ADR 0010, ADR 0014).
        Column("last_event_id", String(36), nullable=True),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    # One row per stream (a case, a region), its version counting the writes to it: a write
    # expects the version it read, so two writers never both decide on the same state (ADR 0014).
    case_streams = Table(
        "case_streams",
        metadata,
        Column("case_id", String(36), primary_key=True),
        Column("version", Integer, nullable=False),
    )
    case_events = Table(
        "case_events",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("case_id", String(36), nullable=False, index=True),
        Column("type", String(80), nullable=False),
        Column("producer", String(40), nullable=False),
        Column("occurred_at", UtcDateTime, nullable=False),
        Column("envelope", Text, nullable=False),
    )
    # Who saw a reporter's name and phone, when, of which case and from where. Append-only: no
    # route updates or deletes a row, and the service never prunes them (kept >= 180 days).
    personal_data_reads = Table(
        PERSONAL_DATA_READS_TABLE,
        metadata,
        Column("position", BigAutoId, primary_key=True, autoincrement=True),
        Column("read_at", UtcDateTime, nullable=False, index=True),
        Column("subject", String(128), nullable=False, index=True),
        Column("role", String(32), nullable=False),
        Column("unit_id", String(64), nullable=True),
        Column("source_system", String(64), nullable=True),
        Column("case_id", String(36), nullable=False, index=True),
        Column("resource", String(200), nullable=False),
        Column("client_address", String(64), nullable=True),
    )
    return RuntimeTables(metadata, outbox, checkpoints, case_streams, case_events, personal_data_reads)


#: Connections a service keeps to PostgreSQL: its consumer, its relay, its jobs and the requests it
#: serves at once. A request beyond them waits for one (``pool_timeout``) rather than opening more:
#: a connection opened for a peak and closed after it is a connection, an authentication and every
#: statement prepared again — measured, a pool of 10 with as many more at peaks opened ~10
#: connections a second under the bench's load (docs/performance.md).
DEFAULT_POOL_SIZE = 20


def create_engine(database_url: str, *, pool_size: int = DEFAULT_POOL_SIZE, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite files get WAL, a busy timeout and write-locking transactions.

    PostgreSQL connections are not pinged on every checkout (a round trip each, a quarter of all
    round trips, docs/performance.md): a connection found dead fails its statement, the pool drops
    it, and the unit of work is tried again on another one (``is_transient``)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=False, pool_size=pool_size, max_overflow=0, **kwargs)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (the documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writing transactions ask for IMMEDIATE (see SQLITE_WRITE): it takes the write lock up
        # front, because a deferred transaction that reads and then writes fails with SQLITE_BUSY
        # when another writer got in between, whatever the timeout. Reads stay deferred, so in WAL
        # mode they never wait for a writer.
        connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return engine


#: Execution options of a connection that will write: on SQLite its transaction takes the write lock first.
SQLITE_WRITE = {"sqlite_begin": "IMMEDIATE"}


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the missing tables and, on PostgreSQL, the function a write calls to refuse streams
    changed since they were read (ADR 0014). A service's schema is brought to head by its migrations
    (``caseloop_events.runtime.migrations``, ADR 0016); this is for tables no migration knows."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        if connection.dialect.name == "postgresql":
            await connection.execute(text(REQUIRE_VERSIONS_FUNCTION))


#: Raised inside the statement that writes a unit of work when a stream it read was written by
#: someone else meanwhile: the whole statement is undone (SQLSTATE 40001, as a serialization failure).
REQUIRE_VERSIONS_FUNCTION = """
CREATE OR REPLACE FUNCTION caseloop_require_versions(written bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF written <> expected THEN
        RAISE EXCEPTION 'caseloop: % of % streams were written by someone else since they were read',
            expected - written, expected USING ERRCODE = '40001';
    END IF;
    RETURN written;
END
$$
"""


# Statements are built once per table and set of columns, and the values go with each execution
# as parameters: building an INSERT with its values (coercing each value, and for an upsert the
# ``excluded`` alias of every column) cost more CPU than running it (docs/performance.md).


def _dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def dialect_insert(dialect_name: str, table: Table) -> Any:
    """The INSERT of the dialect, which has ON CONFLICT."""
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


@functools.cache
def _upsert_statement(dialect_name: str, table: Table, columns: tuple[str, ...], key: tuple[str, ...]) -> Any:
    insert = dialect_insert(dialect_name, table)
    return insert.on_conflict_do_update(
        index_elements=list(key), set_={c: insert.excluded[c] for c in columns if c not in key}
    )


@functools.cache
def _insert_ignoring_statement(dialect_name: str, table: Table) -> Any:
    return dialect_insert(dialect_name, table).on_conflict_do_nothing()


async def upsert_row(session: AsyncSession, table: Table, values: dict[str, Any], key: tuple[str, ...]) -> None:
    """Insert the row, or update the row with the same key."""
    await upsert_rows(session, table, [values], key)


async def upsert_rows(session: AsyncSession, table: Table, rows: list[dict[str, Any]], key: tuple[str, ...]) -> None:
    """Insert each row (all with the same columns), or update the row with its key: one statement
    executed for them all."""
    if rows:
        await session.execute(_upsert_statement(_dialect_of(session), table, tuple(rows[0]), key), rows)


async def insert_row_ignoring_duplicates(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    """Insert the row unless one with its key exists already."""
    await insert_rows_ignoring_duplicates(session, table, [values])


async def insert_rows_ignoring_duplicates(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows (all with the same columns) but those whose key exists already: one
    statement, executed for all the rows at once (asyncpg pipelines them), not an INSERT of
    thousands of VALUES built and compiled afresh each time."""
    if not rows:
        return
    # A parameter naming no column would be ignored silently (``.values()`` refused it).
    unknown = rows[0].keys() - table.c.keys()
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    await session.execute(_insert_ignoring_statement(_dialect_of(session), table), rows)


async def ping(session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))
