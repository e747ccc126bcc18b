"""The outbox keeps each event's W3C traceparent, sent as a Kafka header (issue 17: traces across Kafka).

Revision ID: v0002
Revises: v0001
Create Date: 2026-12-05 05:12:09.639520
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "v0002"
down_revision: str | Sequence[str] | None = "v0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
