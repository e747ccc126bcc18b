"""The schema before migrations (ADR 0003): the tables ``create_all`` made, the runtime's included, and on
PostgreSQL the function a unit of work's write calls to refuse streams changed since they were read.

Revision ID: v0001
Revises:
Create Date: 2026-12-05 05:12:00.372393
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
        "case_links",
        sa.Column("follower_case_id", sa.String(length=36), nullable=False),
        sa.Column("original_case_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("follower_case_id"),
    )
    with op.batch_alter_table("case_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_links_original_case_id"), ["original_case_id"], unique=False)

    op.create_table(
        "case_streams",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("case_no", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("source_system", sa.String(length=64), nullable=True),
        sa.Column("town_code", sa.String(length=32), nullable=True),
        sa.Column("village_code", sa.String(length=32), nullable=True),
        sa.Column("grid_code", sa.String(length=32), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("risk_level", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.String(length=64), nullable=True),
        sa.Column("assisting_unit_ids", sa.Text(), nullable=False),
        sa.Column("campaign_ids", sa.Text(), nullable=False),
        sa.Column("returns", sa.Integer(), nullable=False),
        sa.Column("holder_kind", sa.String(length=16), nullable=False),
        sa.Column("holder_id", sa.String(length=64), nullable=True),
        sa.Column("accepted_at", UtcDateTime(), nullable=True),
        sa.Column("awaiting_evaluation_since", UtcDateTime(), nullable=True),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("due_at", UtcDateTime(), nullable=True),
        sa.Column("notice_rung", sa.String(length=32), nullable=True),
        sa.Column("notice_level", sa.String(length=16), nullable=True),
        sa.Column("next_notice_at", UtcDateTime(), nullable=True),
        sa.Column("sla_profile", sa.String(length=32), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("view", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cases_awaiting_evaluation_since"), ["awaiting_evaluation_since"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cases_case_no"), ["case_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_next_notice_at"), ["next_notice_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_notice_rung"), ["notice_rung"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_town_code"), ["town_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_unit_id"), ["unit_id"], unique=False)
        batch_op.create_index("ix_cases_updated", ["updated_at", "case_id"], unique=False)

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
        "feedback_deliveries",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("about_event_id", sa.String(length=36), nullable=False),
        sa.Column("about_type", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    with op.batch_alter_table("feedback_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_deliveries_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_feedback_deliveries_due", ["state", "next_attempt_at"], unique=False)

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

    op.create_table(
        "region_modes",
        sa.Column("region_code", sa.String(length=16), nullable=False),
        sa.Column("region_level", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("switched_at", UtcDateTime(), nullable=False),
        sa.Column("switched_by", sa.String(length=64), nullable=False),
        sa.Column("switch_event_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("region_code"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REQUIRE_VERSIONS_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION caseloop_require_versions(bigint, bigint)")
    op.drop_table("region_modes")
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
    with op.batch_alter_table("feedback_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_feedback_deliveries_case_id"))

    op.drop_table("feedback_deliveries")
    op.drop_table("consumer_checkpoints")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_updated")
        batch_op.drop_index(batch_op.f("ix_cases_unit_id"))
        batch_op.drop_index(batch_op.f("ix_cases_town_code"))
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_notice_rung"))
        batch_op.drop_index(batch_op.f("ix_cases_next_notice_at"))
        batch_op.drop_index(batch_op.f("ix_cases_due_at"))
        batch_op.drop_index(batch_op.f("ix_cases_case_no"))
        batch_op.drop_index(batch_op.f("ix_cases_awaiting_evaluation_since"))

    op.drop_table("cases")
    op.drop_table("case_streams")
    with op.batch_alter_table("case_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_links_original_case_id"))

    op.drop_table("case_links")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_events_case_id"))

    op.drop_table("case_events")
