"""The backlog warning's episodes and the extra sessions added on it (issue 16).

Revision ID: 0007b
Revises: 0007s
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007b"
down_revision = "0007s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extra_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_key", sa.String(length=64), nullable=False),
        sa.Column("series_id", sa.String(length=32), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_message", sa.String(length=300), nullable=True),
        sa.Column("added_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extra_sessions")),
        sa.UniqueConstraint("session_key", name=op.f("uq_extra_sessions_session_key")),
    )
    op.create_table(
        "backlog_episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.String(length=32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("proposed_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.String(length=8), nullable=True),
        sa.Column("extra_key", sa.String(length=64), nullable=True),
        sa.Column("pending", sa.String(length=700), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backlog_episodes")),
    )
    op.create_index(op.f("ix_backlog_episodes_series_id"), "backlog_episodes", ["series_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backlog_episodes_series_id"), table_name="backlog_episodes")
    op.drop_table("backlog_episodes")
    op.drop_table("extra_sessions")
