"""Flow control (issue 13): a run's priority (runs, queue), the concurrency groups of a
queue row, a batch run's events, throttle and rate-limit state, the run a key's triggers
go to (debounce, batch, singleton), and events by (name, ts) for ``wait_for_event``'s
lookback.

Additive: older orchestrators run on it (the new NOT NULL columns have a server default).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    for table in ("runs", "queue"):
        op.add_column(table, sa.Column("priority", sa.Integer(), nullable=False,
                                       server_default="1"))
    op.add_column("schedules", sa.Column("priority", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("events_json", sa.Text(), nullable=True))
    op.add_column("queue", sa.Column("ckey1", sa.Text(), nullable=True))
    op.add_column("queue", sa.Column("ckey2", sa.Text(), nullable=True))
    for col in ("ckey1", "ckey2"):  # partial: rows in no group cost them nothing
        op.create_index(f"ix_queue_{col}", "queue", [col], unique=False,
                        sqlite_where=sa.text(f"{col} IS NOT NULL"),
                        postgresql_where=sa.text(f"{col} IS NOT NULL"))
    # the claim order (priority aged): filled for the rows already queued
    op.add_column("queue", sa.Column("rank_at", sa.Float(), nullable=False, server_default="0"))
    op.execute("UPDATE queue SET rank_at = due_at - (priority - 1) * 60.0")
    op.create_index("ix_queue_rank_free", "queue", ["rank_at"], unique=False,
                    sqlite_where=sa.text("ckey1 IS NULL"),
                    postgresql_where=sa.text("ckey1 IS NULL"))
    op.create_index("ix_queue_rank_limited", "queue", ["rank_at", "run_id"], unique=False,
                    sqlite_where=sa.text("ckey1 IS NOT NULL"),
                    postgresql_where=sa.text("ckey1 IS NOT NULL"))
    op.create_table(
        "flow_leases",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("claims", sa.BigInteger(), nullable=False),
        sa.Column("ckey1", sa.Text(), nullable=False),
        sa.Column("ckey2", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "flow_state",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "flow_runs",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key"),
    )
    op.create_index("ix_events_name_ts", "events", ["name", "ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_name_ts", table_name="events")
    op.drop_table("flow_runs")
    op.drop_table("flow_state")
    op.drop_table("flow_leases")
    op.drop_index("ix_queue_rank_limited", table_name="queue")
    op.drop_index("ix_queue_rank_free", table_name="queue")
    op.drop_index("ix_queue_ckey2", table_name="queue")
    op.drop_index("ix_queue_ckey1", table_name="queue")
    for table, columns in (("queue", ("rank_at", "ckey2", "ckey1", "priority")),
                           ("runs", ("events_json", "priority")), ("schedules", ("priority",))):
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)
