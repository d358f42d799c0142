"""A sender's mails of the last hour, found by index (rate limit, repeated rejections).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mails_sender_received_at", "mails", ["sender", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mails_sender_received_at", table_name="mails")
