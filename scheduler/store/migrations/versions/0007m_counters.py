"""Persistent counters for /metrics: they outlive the rows they count.

Revision ID: 0007m
Revises: 0007b
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007m"
down_revision = "0007b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )


def downgrade() -> None:
    op.drop_table("counters")
