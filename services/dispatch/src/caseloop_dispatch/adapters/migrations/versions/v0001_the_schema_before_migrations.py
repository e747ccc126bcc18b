"""The schema before migrations (ADR 0003): the tables ``create_all`` made, the runtime's included, and on
PostgreSQL the function a unit of work's write calls to refuse streams changed since they were read.

Revision ID: v0001
Revises:
Create Date: 2026-12-05 05:11:59.675149
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from caseloop_events.runtime.storage import REQUIRE_VERSIONS_FUNCTION, UtcDateTime

revision: str = "v0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("case_no", sa.String(length=32), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("unit_id", sa.String(length=64), nullable=False),
        sa.Column("unit_name", sa.String(length=200), nullable=False),
        sa.Column("assisting_unit_ids", sa.Text(), nullable=False),
        sa.Column("fallback_owner", sa.Boolean(), nullable=False),
        sa.Column("returned_by", sa.Text(), nullable=False),
        sa.Column("returns", sa.Integer(), nullable=False),
        sa.Column("transfers", sa.Integer(), nullable=False),
        sa.Column("reworks", sa.Integer(), nullable=False),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("town_code", sa.String(length=32), nullable=False),
        sa.Column("grid_code", sa.String(length=32), nullable=True),
        sa.Column("assigned_at", UtcDateTime(), nullable=False),
        sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
        sa.Column("result_reported_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index("ix_assignments_unit_inbox", ["unit_id", "assigned_at"], unique=False)

    op.create_table(
        "case_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("producer", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_events_case_id"), ["case_id"], unique=False)

    op.create_table(
        "case_streams",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "consumer_checkpoints",
        sa.Column("consumer", sa.String(length=80), nullable=False),
        sa.Column("topic", sa.String(length=120), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition"),
    )
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("topic", sa.String(length=120), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            "ix_outbox_unpublished",
            ["position"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.create_table(
        "personal_data_reads",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=True),
        sa.Column("source_system", sa.String(length=64), nullable=True),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("personal_data_reads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_personal_data_reads_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_personal_data_reads_read_at"), ["read_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_personal_data_reads_subject"), ["subject"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(REQUIRE_VERSIONS_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION caseloop_require_versions(bigint, bigint)")
    with op.batch_alter_table("personal_data_reads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_personal_data_reads_subject"))
        batch_op.drop_index(batch_op.f("ix_personal_data_reads_read_at"))
        batch_op.drop_index(batch_op.f("ix_personal_data_reads_case_id"))

    op.drop_table("personal_data_reads")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_unpublished",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_outbox_case_id"))

    op.drop_table("outbox")
    op.drop_table("consumer_checkpoints")
    op.drop_table("case_streams")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_events_case_id"))

    op.drop_table("case_events")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_unit_inbox")

    op.drop_table("assignments")
