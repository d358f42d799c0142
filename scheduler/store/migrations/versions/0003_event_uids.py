"""Calendar events keep what was last sent; slots get UIDs that never repeat.

``items.event_uid``: the UID of the item's slot event, random
(``sparring-slot-<uuid4 hex>@<domain>``), so that a new database or a row id
reused after a purge never gives a new event the UID of an old one. Rows
from before this revision keep NULL: their events went out under the old
row-id UID, which stays theirs (they are already in people's calendars).

``calendar_events.meeting_enc``: the event as last sent (encrypted: a
booking's attendees are the citizen's network), so that a cancellation
carries the event as it was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("event_uid", sa.String(length=200), nullable=True))
    with op.batch_alter_table("calendar_events") as batch:
        batch.add_column(sa.Column("meeting_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calendar_events") as batch:
        batch.drop_column("meeting_enc")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("event_uid")
