"""dispatch's own tables (the runtime adds outbox, checkpoints and case log to the same metadata)."""

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

from caseloop_events.runtime.storage import RUNTIME_PROJECTIONS, UtcDateTime, define_runtime_tables

metadata = MetaData()

# One row per assigned case: the unit inboxes and the assignment view read it. Location and
# judgment columns are nullable because a rebuild may read the dispatch topic before intake's.
assignments = Table(
    "assignments",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_no", String(32), nullable=True),
    Column("title", Text, nullable=True),
    Column("unit_id", String(64), nullable=False),
    Column("unit_name", String(200), nullable=False),
    # ",U-A,U-B," so that an inbox query can find assisting units with LIKE on any database.
    Column("assisting_unit_ids", Text, nullable=False, default=""),
    Column("fallback_owner", Boolean, nullable=False, default=False),
    Column("returned_by", Text, nullable=False, default=""),
    Column("returns", Integer, nullable=False, default=0),
    Column("transfers", Integer, nullable=False, default=0),
    Column("reworks", Integer, nullable=False, default=0),
    Column("reopen_count", Integer, nullable=False, default=0),
    Column("route", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("category", String(64), nullable=True),
    Column("town_code", String(32), nullable=False),
    Column("grid_code", String(32), nullable=True),
    Column("assigned_at", UtcDateTime, nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("result_reported_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)
# A unit's inbox: its cases, newest first.
Index("ix_assignments_unit_inbox", assignments.c.unit_id, assignments.c.assigned_at)

runtime_tables = define_runtime_tables(metadata)

#: The tables a replay rebuilds from the log, each with the columns that may differ from the live
#: database without the projection being wrong (ADR 0008).
PROJECTIONS: dict[str, frozenset[str]] = {"assignments": frozenset(), **RUNTIME_PROJECTIONS}

#: Tables no replay can rebuild, carried over by a promotion with the outbox.
OPERATIONAL_TABLES: tuple[str, ...] = ()
