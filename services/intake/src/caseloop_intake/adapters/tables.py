"""intake's own tables (the runtime adds outbox, checkpoints and case log to the same metadata)."""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from caseloop_events.runtime.storage import RUNTIME_PROJECTIONS, UtcDateTime, define_runtime_tables

metadata = MetaData()

# Every screened case as the log has it (a projection: rebuilt by replay). Screening reads it
# to find the open cases a new report may repeat.
cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_no", String(32), nullable=False, unique=True),
    Column("source_system", String(64), nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("reported_category", String(64), nullable=True),
    Column("grid_code", String(32), nullable=True),
    Column("town_code", String(32), nullable=True, index=True),
    Column("screened_at", UtcDateTime, nullable=False),
    Column("accepted_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("reason_code", String(32), nullable=True),
    #: The case this one follows: the original of a duplicate, or the case it was merged into.
    Column("follows_case_id", String(36), nullable=True, index=True),
    Column("body", Text, nullable=False),
    UniqueConstraint("source_system", "external_id", name="uq_cases_source_external_id"),
)
Index("ix_cases_open_in_grid", cases.c.grid_code, cases.c.status, cases.c.accepted_at)

# The last case number's sequence. Kept as a row (not a database sequence) so that a
# projection rebuilt from the log continues after the highest number the log holds.
case_number_counter = Table(
    "case_number_counter",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

# Idempotency-Key requests of POST /v1/cases (IETF draft "The Idempotency-Key HTTP Header Field"):
# per calling system and key, the request's fingerprint and, once answered, the answer.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    # Which request holds the key while it is in flight.
    Column("claim", String(36), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("location", Text, nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True, index=True),
)

runtime_tables = define_runtime_tables(metadata)

#: The tables a replay rebuilds from the log, each with the columns that may differ from the live
#: database without the projection being wrong (ADR 0008).
PROJECTIONS: dict[str, frozenset[str]] = {"cases": frozenset(), **RUNTIME_PROJECTIONS}

#: Tables no replay can rebuild — the case-number counter, advanced by commands, and the
#: idempotency keys of requests — carried over by a promotion, with the outbox.
OPERATIONAL_TABLES: tuple[str, ...] = ("case_number_counter", "idempotency_keys")
