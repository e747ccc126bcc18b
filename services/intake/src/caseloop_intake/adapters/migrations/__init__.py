"""intake's schema migrations (Alembic; ADR 0016): ``caseloop migrate intake`` brings a database to head."""

from pathlib import Path

from caseloop_events.runtime.migrations import Migrations
from caseloop_intake.adapters.tables import metadata

MIGRATIONS = Migrations("intake", metadata, Path(__file__).parent)
