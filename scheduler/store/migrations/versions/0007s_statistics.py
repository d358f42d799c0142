"""The statistics that outlive the items: anonymous counts folded in before a purge.

Revision ID: 0007s
Revises: 0006c
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007s"
down_revision = "0006c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stat_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.String(32), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("age_group", sa.String(8), nullable=False),
        sa.Column("measure", sa.String(40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_counts")),
    )
    op.create_index("ix_stat_counts_session_date", "stat_counts", ["session_date"], unique=False)
    op.create_table(
        "stat_folded_slots",
        sa.Column("session_key", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("session_key", "slot", name=op.f("pk_stat_folded_slots")),
    )


def downgrade() -> None:
    op.drop_table("stat_folded_slots")
    op.drop_index("ix_stat_counts_session_date", table_name="stat_counts")
    op.drop_table("stat_counts")
