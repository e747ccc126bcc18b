"""The databases the operator tooling works on: a service's live one and its shadow copies.

A shadow sits beside the live database — ``dispatch.shadow.db`` next to ``dispatch.db``, or
``caseloop_dispatch_shadow`` next to ``caseloop_dispatch`` on the same PostgreSQL server — so
a replay never writes where the service does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, delete, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from caseloop_events.runtime.storage import create_engine


class DatabaseUnreachable(RuntimeError):
    def __init__(self, url: str, error: BaseException) -> None:
        safe = make_url(url).render_as_string(hide_password=True)
        super().__init__(f"cannot open the database {safe}: {error}")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sibling_url(live_url: str, suffix: str) -> str:
    """The URL of a database beside the live one, told apart by ``suffix``."""
    url = make_url(live_url)
    if is_sqlite(live_url):
        path = Path(url.database or "")
        return url.set(database=str(path.with_name(f"{path.stem}.{suffix}{path.suffix}"))).render_as_string(False)
    return url.set(database=f"{url.database}_{suffix}").render_as_string(False)


class UnsafeDatabaseName(ValueError):
    pass


def _quoted_name(url: str) -> str:
    """The database's name, quoted as PostgreSQL quotes identifiers (never pasted in raw)."""
    name = make_url(url).database or ""
    if not name or len(name.encode()) > 63:
        raise UnsafeDatabaseName(f"database name {name!r} is empty or longer than PostgreSQL's 63 bytes")
    quoted: str = postgresql.dialect().identifier_preparer.quote_identifier(name)  # type: ignore[no-untyped-call]
    return quoted


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name the same database (the same SQLite file, or the same server and name)."""
    a, b = make_url(first), make_url(second)
    if is_sqlite(first) and is_sqlite(second):
        return Path(a.database or "").resolve() == Path(b.database or "").resolve()
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)


def _sqlite_files(url: str) -> list[Path]:
    path = Path(make_url(url).database or "")
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


@asynccontextmanager
async def _server(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to the PostgreSQL server's maintenance database, outside any transaction."""
    server: URL = make_url(url).set(database="postgres")
    async with _connection(create_async_engine(server, isolation_level="AUTOCOMMIT"), url) as connection:
        yield connection


@asynccontextmanager
async def _connection(engine: AsyncEngine, url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine`` (disposed after), an unreachable database a clear error."""
    try:
        async with engine.connect() as connection:
            yield connection
    except (OperationalError, DBAPIError, OSError) as error:
        raise DatabaseUnreachable(url, error) from error
    finally:
        await engine.dispose()


async def drop_database(url: str) -> None:
    if is_sqlite(url):
        for file in _sqlite_files(url):
            file.unlink(missing_ok=True)
        return
    async with _server(url) as server:
        await server.execute(text(f"DROP DATABASE IF EXISTS {_quoted_name(url)} WITH (FORCE)"))


async def recreate_database(url: str) -> None:
    """An empty database at ``url`` (whatever was there is dropped)."""
    await drop_database(url)
    if is_sqlite(url):
        Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
        return
    async with _server(url) as server:
        await server.execute(text(f"CREATE DATABASE {_quoted_name(url)}"))


def _sqlite_file_exists(url: str) -> bool:
    return Path(make_url(url).database or "").exists()


async def database_exists(url: str) -> bool:
    if is_sqlite(url):
        return _sqlite_file_exists(url)
    name = make_url(url).database
    async with _server(url) as server:
        found = await server.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
    return found is not None


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to an existing database; a clear error when it cannot be opened."""
    if is_sqlite(url) and not _sqlite_file_exists(url):
        raise DatabaseUnreachable(url, FileNotFoundError("no such database file"))
    async with _connection(create_engine(url), url) as connection:
        yield connection


async def read_rows(connection: AsyncConnection, metadata: MetaData, table_name: str) -> list[dict[str, Any]]:
    """Every row of a table, in primary-key order."""
    table = metadata.tables[table_name]
    result = await connection.execute(select(table).order_by(*table.primary_key.columns))
    return [dict(row._mapping) for row in result]


async def copy_tables(source_url: str, target_url: str, metadata: MetaData, tables: Iterable[str]) -> dict[str, int]:
    """Replace the rows of ``tables`` in the target with the source's; returns rows copied per table."""
    copied: dict[str, int] = {}
    async with connected(source_url) as source, connected(target_url) as target:
        for name in tables:
            table = metadata.tables[name]
            rows = await read_rows(source, metadata, name)
            await target.execute(delete(table))
            for start in range(0, len(rows), 1000):
                await target.execute(insert(table), rows[start : start + 1000])
            copied[name] = len(rows)
            await _advance_sequences(target, table)
        await target.commit()
    return copied


async def _advance_sequences(connection: AsyncConnection, table: Table) -> None:
    """Rows copied with their own serial keys (the outbox's position) leave PostgreSQL's sequence
    behind; move it past them, or the next insert would take a key a copied row holds."""
    if connection.dialect.name != "postgresql":
        return
    for column in table.primary_key.columns:
        if column.autoincrement is True or (column.autoincrement == "auto" and column.type.python_type is int):
            await connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                ),
                {"table": table.name, "column": column.name},
            )


class DatabaseBusy(RuntimeError):
    pass


def _checkpoint_sqlite(url: str) -> None:
    # Fold the write-ahead log into the file, so renaming the file moves every committed row;
    # a process still holding the file makes the checkpoint busy: then nothing is renamed.
    with sqlite3.connect(make_url(url).database or "") as connection:
        busy, _log_frames, _checkpointed = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise DatabaseBusy(f"{make_url(url).database} is still in use: stop the service before promoting")


async def swap_in(shadow_url: str, live_url: str) -> str:
    """Put the shadow where the live database is; the live one is kept under a dated name, returned."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    kept_url = sibling_url(live_url, f"replaced_{stamp}")
    if is_sqlite(live_url):
        _checkpoint_sqlite(live_url)
        _checkpoint_sqlite(shadow_url)
        live, shadow, kept = (Path(make_url(u).database or "") for u in (live_url, shadow_url, kept_url))
        live.rename(kept)
        shadow.rename(live)
        for leftover in (*_sqlite_files(live_url)[1:], *_sqlite_files(shadow_url)[1:]):
            leftover.unlink(missing_ok=True)
        return kept_url
    live_name, shadow_name, kept_name = (_quoted_name(u) for u in (live_url, shadow_url, kept_url))
    engine = create_async_engine(make_url(live_url).set(database="postgres"))
    try:
        # Both renames or neither: a failure never leaves the live name without a database.
        async with engine.begin() as server:
            await server.execute(text(f"ALTER DATABASE {live_name} RENAME TO {kept_name}"))
            await server.execute(text(f"ALTER DATABASE {shadow_name} RENAME TO {live_name}"))
    except (OperationalError, DBAPIError, OSError) as error:
        raise DatabaseBusy(f"could not swap the databases (is a session still open on either?): {error}") from error
    finally:
        await engine.dispose()
    return kept_url
