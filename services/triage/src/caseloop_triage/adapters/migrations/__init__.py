"""triage's schema migrations (Alembic; ADR 0016): ``caseloop migrate triage`` brings a database to head."""

from pathlib import Path

from caseloop_events.runtime.migrations import Migrations
from caseloop_triage.adapters.tables import metadata

MIGRATIONS = Migrations("triage", metadata, Path(__file__).parent)
