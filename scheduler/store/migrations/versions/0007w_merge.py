"""Join the backlog (0007b), metrics (0007m) and statistics (0007s) heads on the web branch, which builds on all three.

No schema change. The lead re-chains the issue-16 migrations at merge time;
this file then goes (or stays as the join, if the chain keeps two heads).

Revision ID: 0007w
Revises: 0007b, 0007m, 0007s
"""

revision = "0007w"
down_revision = ("0007b", "0007m", "0007s")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
