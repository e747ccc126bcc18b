"""triage's own tables (the runtime adds outbox, checkpoints and case log to the same metadata)."""

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

from caseloop_events.runtime.storage import RUNTIME_PROJECTIONS, UtcDateTime, define_runtime_tables

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
    Column("judged_by_id", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("judged_at", UtcDateTime, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("body", Text, nullable=False),
)

# The cases awaiting an officer's judgment (a projection: a row leaves once the case is
# judged, or once it is merged, linked as a duplicate or closed).
review_queue = Table(
    "review_queue",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_no", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("grid_code", String(32), nullable=False),
    Column("town_code", String(32), nullable=False),
    Column("queued_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("candidate_categories", Text, nullable=False),
    Column("event_id", String(36), nullable=False),
)
Index("ix_review_queue_oldest_first", review_queue.c.queued_at, review_queue.c.case_id)

runtime_tables = define_runtime_tables(metadata)

#: The tables a replay rebuilds from the log, each with the columns that may differ from the live
#: database without the projection being wrong (ADR 0008).
PROJECTIONS: dict[str, frozenset[str]] = {
    "judgments": frozenset(),
    "review_queue": frozenset(),
    **RUNTIME_PROJECTIONS,
}

#: Tables no replay can rebuild, carried over by a promotion with the outbox.
OPERATIONAL_TABLES: tuple[str, ...] = ()
