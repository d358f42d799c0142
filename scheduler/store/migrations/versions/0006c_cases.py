"""Cases after the forum (issue 15): cases, decisions, case meetings.

Revision ID: 0006c
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006c"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(length=12), nullable=False),
        sa.Column("series_id", sa.String(length=32), nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("cpr_hash", sa.String(length=64), nullable=False),
        sa.Column("cpr_enc", sa.LargeBinary(), nullable=False),
        sa.Column("stage", sa.String(length=24), nullable=False),
        sa.Column("holder", sa.String(length=320), nullable=False),
        sa.Column("offered_to", sa.String(length=320), nullable=True),
        sa.Column("referrer", sa.String(length=320), nullable=False),
        sa.Column("receiver", sa.String(length=320), nullable=False),
        sa.Column("parties", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agreed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index(op.f("ix_cases_cpr_hash"), "cases", ["cpr_hash"], unique=False)
    op.create_index(op.f("ix_cases_stage"), "cases", ["stage"], unique=False)
    op.create_index(op.f("ix_cases_purge_after"), "cases", ["purge_after"], unique=False)
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.String(length=32), nullable=False),
        sa.Column("session_key", sa.String(length=64), nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("cpr_hash", sa.String(length=64), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("receiver", sa.String(length=320), nullable=True),
        sa.Column("referred_to", sa.String(length=100), nullable=True),
        sa.Column("note_enc", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_id", sa.String(length=12), nullable=True),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_decisions_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index(op.f("ix_decisions_session_key"), "decisions", ["session_key"], unique=False)
    op.create_index(op.f("ix_decisions_cpr_hash"), "decisions", ["cpr_hash"], unique=False)
    op.create_index(op.f("ix_decisions_case_id"), "decisions", ["case_id"], unique=False)
    op.create_index(op.f("ix_decisions_purge_after"), "decisions", ["purge_after"], unique=False)
    op.create_table(
        "case_meetings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_meetings_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_meetings")),
        sa.UniqueConstraint("uid", name=op.f("uq_case_meetings_uid")),
    )
    op.create_index(op.f("ix_case_meetings_case_id"), "case_meetings", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_table("case_meetings")
    op.drop_table("decisions")
    op.drop_table("cases")
