"""Join the backlog (0007b, after the statistics' 0007s) and metrics (0007m) heads on the web branch, which builds on both.

No schema change. The lead re-chains the issue-16 migrations at merge time;
this file then goes (or stays as the join, if the chain keeps two heads).

Revision ID: 0007w
Revises: 0007b, 0007m
"""

revision = "0007w"
down_revision = ("0007b", "0007m")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
