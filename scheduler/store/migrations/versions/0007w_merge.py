"""Join the metrics (0007m) and statistics (0007s) heads on the metrics branch.

No schema change. The web branch has the same join (same id) with the
backlog head (0007b) too; the lead re-chains the issue-16 migrations at
merge time.

Revision ID: 0007w
Revises: 0007m, 0007s
"""

revision = "0007w"
down_revision = ("0007m", "0007s")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
