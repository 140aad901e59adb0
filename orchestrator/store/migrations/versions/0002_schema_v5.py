"""Schema version 5: apps.last_contact_at, crons.paused, steps.deadline_at, and indexes
on runs.created_at and events.ts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("apps", sa.Column("last_contact_at", sa.Float(), nullable=True))
    op.add_column("steps", sa.Column("deadline_at", sa.Float(), nullable=True))
    # existing crons are not paused; the models have no server default, so it goes again
    # (SQLite: a batch copies the table, it cannot drop a column's default in place)
    op.add_column("crons", sa.Column("paused", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    with op.batch_alter_table("crons") as batch:
        batch.alter_column("paused", server_default=None)
    op.create_index("ix_runs_created", "runs", ["created_at"], unique=False)
    op.create_index("ix_events_ts", "events", ["ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_ts", table_name="events")
    op.drop_index("ix_runs_created", table_name="runs")
    for table, column in (("crons", "paused"), ("steps", "deadline_at"),
                          ("apps", "last_contact_at")):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
