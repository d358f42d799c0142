"""Initial schema: mails, items, outbox, calendar events, session state, leases, meta.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: it spells out plain column types instead of importing the models,
so later model changes need a new revision, never an edit here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _req(name: str, type_) -> sa.Column:
    return sa.Column(name, type_, nullable=False)


def _index(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "mails",
        _req("id", sa.Integer()),
        _str("message_key", 64),
        _str("source_ref", 200),
        _utc("received_at"),
        _utc("processed_at"),
        _str("outcome", 16),
        _str("reason_code", 32, nullable=True),
        _str("sender", 320, nullable=True),
        _utc("purge_after"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mails")),
        sa.UniqueConstraint("message_key", name=op.f("uq_mails_message_key")),
    )
    _index("mails", "purge_after")
    op.create_table(
        "items",
        _req("id", sa.Integer()),
        _req("mail_id", sa.Integer()),
        _str("series_id", 32),
        _str("session_key", 64),
        _utc("session_start"),
        _req("acute", sa.Boolean()),
        _str("status", 16),
        _str("cpr_hash", 64),
        _req("cpr_enc", sa.LargeBinary()),
        _req("text_enc", sa.LargeBinary()),
        _str("sender", 320),
        _utc("received_at"),
        _utc("created_at"),
        _utc("updated_at"),
        _utc("purge_after"),
        _req("version", sa.Integer()),
        sa.ForeignKeyConstraint(["mail_id"], ["mails.id"], name=op.f("fk_items_mail_id_mails")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
    )
    _index("items", "cpr_hash", "purge_after", "session_key", "status")
    op.create_table(
        "outbox",
        _req("id", sa.Integer()),
        _str("dedupe_key", 200),
        _str("kind", 32),
        _req("recipients", sa.Text()),
        _req("payload_enc", sa.LargeBinary()),
        _str("status", 16),
        _req("attempts", sa.Integer()),
        _utc("next_attempt_at"),
        _str("last_error", 500, nullable=True),
        _utc("created_at"),
        _utc("sent_at", nullable=True),
        _utc("purge_after"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    _index("outbox", "next_attempt_at", "purge_after", "status")
    op.create_table(
        "calendar_events",
        _str("uid", 200),
        _req("sequence", sa.Integer()),
        _str("fingerprint", 64),
        _req("cancelled", sa.Boolean()),
        _str("kind", 16),
        _utc("updated_at"),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_calendar_events")),
    )
    op.create_table(
        "session_state",
        _str("session_key", 64),
        _utc("agenda_sent_at", nullable=True),
        _req("agenda_late", sa.Boolean()),
        _req("cancel_sent", sa.Boolean()),
        _utc("updated_at"),
        sa.PrimaryKeyConstraint("session_key", name=op.f("pk_session_state")),
    )
    op.create_table(
        "leases",
        _str("name", 64),
        _str("holder", 128),
        _utc("expires_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "meta",
        _str("key", 64),
        _str("value", 500),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )


def downgrade() -> None:
    for table in ("meta", "leases", "session_state", "calendar_events", "outbox", "items", "mails"):
        op.drop_table(table)  # indexes go with their tables
