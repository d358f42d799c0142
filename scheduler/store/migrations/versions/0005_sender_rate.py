"""A sender's mails of the last hour, found by index (rate limit, repeated rejections).

Revision ID: 0004_sender_rate
Revises: 0004
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004_sender_rate"
down_revision = "0004"  # re-chained onto main's head after merging it
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mails_sender_received_at", "mails", ["sender", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mails_sender_received_at", table_name="mails")
