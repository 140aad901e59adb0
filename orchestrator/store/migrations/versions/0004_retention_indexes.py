"""Indexes for the retention sweep: runs by (function, ended_at), schedules by run_id.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_runs_function_ended", "runs", ["function", "ended_at"], unique=False)
    op.create_index("ix_schedules_run_id", "schedules", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_schedules_run_id", table_name="schedules")
    op.drop_index("ix_runs_function_ended", table_name="runs")
