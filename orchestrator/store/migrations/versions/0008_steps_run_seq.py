"""An index on steps (run_id, seq): a run's memo is read in order without a sort, and its
tail (the entries from ``seq`` k on, when the app keeps the head: engine/tails.py) without
reading the head's rows (a loop's 1,000th iteration read 2,000 rows per call for two).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_steps_run_seq", "steps", ["run_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_steps_run_seq", table_name="steps")
