"""supervision's own tables: the case list, the links between cases and the feedback deliveries
(the runtime's case log is the timeline)."""

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

from caseloop_events.runtime.storage import RUNTIME_PROJECTIONS, UtcDateTime, define_runtime_tables

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
    # ",U-1,U-2," and ",C-1,C-2,": a LIKE '%,X,%' finds a member on SQLite and PostgreSQL alike.
    Column("assisting_unit_ids", Text, nullable=False, default=","),
    Column("campaign_ids", Text, nullable=False, default=","),
    Column("returns", Integer, nullable=False, default=0),
    Column("holder_kind", String(16), nullable=False),
    Column("holder_id", String(64), nullable=True),
    Column("accepted_at", UtcDateTime, nullable=True),
    # Set while the case waits for the citizen's evaluation: what the auto-closure timer scans.
    Column("awaiting_evaluation_since", UtcDateTime, nullable=True, index=True),
    Column("closed_at", UtcDateTime, nullable=True),
    # The deadline of the clock counting now (none while paused or stopped): what ?overdue=true compares.
    Column("due_at", UtcDateTime, nullable=True, index=True),
    # The highest rung an open clock has reached, and the level it is addressed to: ?notice= and ?level=.
    Column("notice_rung", String(32), nullable=True, index=True),
    Column("notice_level", String(16), nullable=True),
    # When the next rung of a running clock is reached: what the notice timer scans.
    Column("next_notice_at", UtcDateTime, nullable=True, index=True),
    Column("sla_profile", String(32), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("view", Text, nullable=False),
)
Index("ix_cases_updated", cases.c.updated_at, cases.c.case_id)

# Which case a duplicate or merged case follows: when the original closes, its followers close too.
case_links = Table(
    "case_links",
    metadata,
    Column("follower_case_id", String(36), primary_key=True),
    Column("original_case_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    # False once unmerged: the case goes its own way again.
    Column("active", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Feedback to source systems, queued in the transaction that emitted the event it is about.
feedback_deliveries = Table(
    "feedback_deliveries",
    metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("about_event_id", String(36), nullable=False),
    Column("about_type", String(80), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_feedback_deliveries_due", feedback_deliveries.c.state, feedback_deliveries.c.next_attempt_at)

# The mode of each town and of the district that was ever switched (平战转换); others are normal.
region_modes = Table(
    "region_modes",
    metadata,
    Column("region_code", String(16), primary_key=True),
    Column("region_level", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("switched_at", UtcDateTime, nullable=False),
    Column("switched_by", String(64), nullable=False),
    Column("switch_event_id", String(36), nullable=False),
)

runtime_tables = define_runtime_tables(metadata)

#: The tables a replay rebuilds from the log, each with the columns that may differ from the live
#: database without the projection being wrong (ADR 0008).
PROJECTIONS: dict[str, frozenset[str]] = {
    "cases": frozenset(),
    # When the link was last written (the clock at that moment), not a fact of the log.
    "case_links": frozenset({"updated_at"}),
    "region_modes": frozenset(),
    **RUNTIME_PROJECTIONS,
}

#: Tables no replay can rebuild — the feedback deliveries, queued when supervision emits and never
#: from reading the log — carried over by a promotion, with the outbox.
OPERATIONAL_TABLES: tuple[str, ...] = ("feedback_deliveries",)
