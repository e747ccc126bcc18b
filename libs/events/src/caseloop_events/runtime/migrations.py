"""A service's schema under Alembic (ADR 0016): one migration environment per service, in its
``adapters/migrations`` folder, with a version table of its own (``alembic_version_<service>``) so
services could share one database. Alembic is configured here in code: no ``alembic.ini`` at run
time. A service's ``env.py`` is one call, ``run_environment(MIGRATIONS)``.

Bringing a database to head (``Migrations.bring_to_head``):
- an empty database gets the tables of the models at once (``create_all``) and is stamped at head;
- a database made before migrations (the service's tables, no version table) has today's first
  revision's schema: it is stamped at ``BASELINE`` and upgraded from there;
- a versioned database is upgraded to head.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from caseloop_events.runtime.storage import REQUIRE_VERSIONS_FUNCTION, UtcDateTime, create_engine

T = TypeVar("T")

#: The first revision of every service: the schema caseloop had before migrations (ADR 0003).
BASELINE = "v0001"

#: ``x`` argument of the ``alembic`` command naming the database to compare with or migrate
#: (``alembic -x url=postgresql+asyncpg://…``); without it, a scratch SQLite database at head.
URL_ARGUMENT = "url"


class SchemaNotAtHead(RuntimeError):
    """In production a service does not migrate its database itself: it refuses to start."""

    def __init__(self, service: str, current: str | None, head: str) -> None:
        self.service, self.current, self.head = service, current, head
        at = f"at revision {current}" if current else "not under migrations (no revision)"
        super().__init__(
            f"the database of {service} is {at}, the code needs revision {head} (head): "
            f"run `caseloop migrate {service}` first"
        )


@dataclass(frozen=True)
class Upgrade:
    """Where a database stood before it was brought to head, and where it stands now."""

    service: str
    before: str | None
    after: str

    def describe(self) -> str:
        if self.before == self.after:
            return f"{self.service}: at {self.after} already"
        return f"{self.service}: {self.before or 'empty'} → {self.after}"


@dataclass(frozen=True)
class Migrations:
    """A service's migration environment: its models, where its revisions live, its version table."""

    service: str
    metadata: MetaData
    #: The folder of ``env.py``, ``script.py.mako`` and ``versions/``.
    directory: Path

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.service}"

    def config(self, connection: Connection | None = None) -> Config:
        """Alembic's configuration, built in code; ``connection``: the one the revisions run on."""
        config = Config()
        config.set_main_option("script_location", str(self.directory))
        if connection is not None:
            config.attributes["connection"] = connection
        return config

    @functools.cached_property
    def head(self) -> str:
        """The last revision (read once: Alembic loads every revision's module to find it)."""
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        assert head is not None, f"{self.service} has no revision"
        return head

    def context_options(self, connection: Connection) -> dict[str, Any]:
        """How every migration context of the service is configured (``env.py`` and the checks)."""
        return {
            "version_table": self.version_table,
            "target_metadata": self.metadata,
            # SQLite alters a table by copying it: Alembic's batch mode does that for it.
            "render_as_batch": connection.dialect.name == "sqlite",
            "compare_type": True,
            "compare_server_default": True,
            "render_item": _render_item,
        }

    def current(self, connection: Connection) -> str | None:
        context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        return context.get_current_revision()

    def differences(self, connection: Connection) -> list[Any]:
        """What autogenerate would write: the models' differences from the database (``alembic check``)."""
        context = MigrationContext.configure(connection, opts=self.context_options(connection))
        return list(compare_metadata(context, self.metadata))

    def upgrade(self, connection: Connection, target: str = "head") -> None:
        """Run the revisions up to ``target`` (on an empty database: from the first)."""
        command.upgrade(self.config(connection), target)

    def downgrade(self, connection: Connection, target: str) -> None:
        command.downgrade(self.config(connection), target)

    def stamp(self, connection: Connection, revision: str) -> None:
        command.stamp(self.config(connection), revision)

    def bring_to_head(self, connection: Connection) -> Upgrade:
        """Empty: create and stamp; made before migrations: stamp ``BASELINE`` and upgrade;
        versioned: upgrade. In the caller's transaction (one, on PostgreSQL, DDL included)."""
        if connection.dialect.name == "postgresql":
            # Two processes migrating one database at once (two replicas started in development)
            # take turns: the second finds it at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:table))"), {"table": self.version_table})
        before = self.current(connection)
        if before is None:
            present = set(inspect(connection).get_table_names()) & set(self.metadata.tables)
            if not present:
                self.metadata.create_all(connection)
                if connection.dialect.name == "postgresql":
                    connection.execute(text(REQUIRE_VERSIONS_FUNCTION))
                self.stamp(connection, "head")
                return Upgrade(self.service, None, self.head)
            self.stamp(connection, BASELINE)
            before = BASELINE
        self.upgrade(connection)
        return Upgrade(self.service, before, self.head)

    def require_head(self, connection: Connection) -> None:
        """Raise ``SchemaNotAtHead`` unless the database is at head (production never migrates)."""
        current, head = self.current(connection), self.head
        if current != head:
            raise SchemaNotAtHead(self.service, current, head)


async def on(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` on a connection of ``engine`` in one transaction."""
    async with engine.begin() as connection:
        return await connection.run_sync(work)


async def migrate(migrations: Migrations, database_url: str) -> Upgrade:
    """Bring the database at ``database_url`` to head (``caseloop migrate``)."""
    engine = create_engine(database_url, pool_size=1)
    try:
        return await on(engine, migrations.bring_to_head)
    finally:
        await engine.dispose()


async def check_at_head(migrations: Migrations, database_url: str) -> None:
    """Raise ``SchemaNotAtHead`` unless the database at ``database_url`` is at head. Quietly: Alembic
    logs how it talks to the database, which says nothing to whoever reads why a service stopped."""
    engine = create_engine(database_url, pool_size=1)
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        await on(engine, migrations.require_head)
    finally:
        alembic_log.setLevel(level)
        await engine.dispose()


def run_environment(migrations: Migrations) -> None:
    """The body of a service's ``env.py``. Given a connection (``Migrations.config``), the revisions
    run on it; run by the ``alembic`` command, on the database of ``-x url=…``, or else on a scratch
    SQLite database brought to head first, so ``alembic revision --autogenerate`` writes just what
    the models changed since the last revision."""
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _run_revisions(migrations, connection)
        return
    if context.is_offline_mode():
        raise SystemExit("caseloop: offline (--sql) migrations are not supported; give a database with -x url=…")
    url = context.get_x_argument(as_dictionary=True).get(URL_ARGUMENT)
    asyncio.run(_run_from_the_command_line(migrations, url))


async def _run_from_the_command_line(migrations: Migrations, url: str | None) -> None:
    scratch: Path | None = None
    if url is None:
        scratch = Path.cwd() / f".alembic-{migrations.service}-scratch.db"
        scratch.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{scratch}"
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            if scratch is not None:
                await connection.run_sync(lambda c: _upgrade_without_environment(migrations, c))
            await connection.run_sync(lambda c: _run_revisions(migrations, c))
    finally:
        await engine.dispose()
        if scratch is not None:
            for leftover in (scratch, *(scratch.with_name(scratch.name + s) for s in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)


def _upgrade_without_environment(migrations: Migrations, connection: Connection) -> None:
    # The revisions run here by Alembic's script directory directly: ``command.upgrade`` would run
    # env.py again, inside the command line's own run of it.
    script = ScriptDirectory.from_config(migrations.config())
    options = migrations.context_options(connection)

    def to_head(revision: Any, _context: Any) -> Sequence[Any]:
        return script._upgrade_revs("head", revision)  # what ``command.upgrade`` runs, too

    migration_context = MigrationContext.configure(connection, opts={**options, "fn": to_head})
    with Operations.context(migration_context), migration_context.begin_transaction():
        migration_context.run_migrations()


def _render_item(kind: str, item: Any, autogen_context: Any) -> str | bool:
    # Autogenerate writes a custom type by its module's path without importing it: name it, import it.
    if kind == "type" and isinstance(item, UtcDateTime):
        autogen_context.imports.add("from caseloop_events.runtime.storage import UtcDateTime")
        return "UtcDateTime()"
    return False


def _run_revisions(migrations: Migrations, connection: Connection) -> None:
    context.configure(connection=connection, **migrations.context_options(connection))
    with context.begin_transaction():
        context.run_migrations()
