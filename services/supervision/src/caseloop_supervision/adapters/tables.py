"""supervision's own tables: the case list (the runtime's case log is the timeline)."""

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text

from caseloop_events.storage import UtcDateTime, define_runtime_tables

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_no", String(32), nullable=True, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("title", Text, nullable=True),
    Column("source_system", String(64), nullable=True),
    Column("town_code", String(32), nullable=True, index=True),
    Column("village_code", String(32), nullable=True),
    Column("grid_code", String(32), nullable=True),
    Column("category", String(64), nullable=True),
    Column("risk_level", Integer, nullable=True),
    Column("unit_id", String(64), nullable=True, index=True),
    Column("holder_kind", String(16), nullable=False),
    Column("holder_id", String(64), nullable=True),
    Column("accepted_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("view", Text, nullable=False),
)
Index("ix_cases_updated", cases.c.updated_at, cases.c.case_id)

runtime_tables = define_runtime_tables(metadata)
