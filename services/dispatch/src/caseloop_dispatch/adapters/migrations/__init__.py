"""dispatch's schema migrations (Alembic; ADR 0016): ``caseloop migrate dispatch`` brings a database to head."""

from pathlib import Path

from caseloop_dispatch.adapters.tables import metadata
from caseloop_events.runtime.migrations import Migrations

MIGRATIONS = Migrations("dispatch", metadata, Path(__file__).parent)
