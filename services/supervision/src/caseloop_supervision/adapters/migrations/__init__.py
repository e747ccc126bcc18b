"""supervision's schema migrations (Alembic; ADR 0016): ``caseloop migrate supervision`` brings a database to head."""

from pathlib import Path

from caseloop_events.runtime.migrations import Migrations
from caseloop_supervision.adapters.tables import metadata

MIGRATIONS = Migrations("supervision", metadata, Path(__file__).parent)
