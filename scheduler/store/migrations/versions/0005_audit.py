"""The audit trail (issue 13): append-only, hash-chained, no personal data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

On PostgreSQL the daemon's role needs no more than INSERT and SELECT on
this table; the trail's own retention cut (``sparring purge``) then runs
as the owner. See README, "Data protection":

    REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM sparring;
    GRANT INSERT, SELECT ON audit TO sparring;
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("series", sa.String(length=32), nullable=True),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"], unique=False)
    op.create_index(op.f("ix_audit_subject"), "audit", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_table("audit")
