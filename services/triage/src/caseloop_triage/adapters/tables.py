"""triage's own tables (the runtime adds outbox, checkpoints and case log to the same metadata)."""

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

from caseloop_events.storage import UtcDateTime, define_runtime_tables

metadata = MetaData()

# The latest judgment of each case, as the log has it (a projection: rebuilt by replay).
judgments = Table(
    "judgments",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("category", String(64), nullable=False, index=True),
    Column("risk_level", Integer, nullable=False),
    Column("sla_tier", String(32), nullable=False),
    Column("handling_level", String(32), nullable=False),
    Column("campaign_ids", Text, nullable=False),
    Column("judged_by", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("judged_at", UtcDateTime, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("body", Text, nullable=False),
)

runtime_tables = define_runtime_tables(metadata)
