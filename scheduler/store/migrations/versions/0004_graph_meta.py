"""meta.value as TEXT: a Graph delta link (kept so that a restart neither
reprocesses nor misses mail) can be longer than 500 characters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.alter_column("value", existing_type=sa.String(length=500), type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.alter_column("value", existing_type=sa.Text(), type_=sa.String(length=500), existing_nullable=False)
