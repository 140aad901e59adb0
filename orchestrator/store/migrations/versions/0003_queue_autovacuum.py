"""PostgreSQL: per-table autovacuum settings and a fillfactor for the ``queue`` table,
whose rows are updated on every claim and deleted when their run ends (the values and
the measurement behind them: docs/operations.md, "Autovacuum"). Nothing on SQLite.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

QUEUE_OPTIONS = {
    # room in each page for the HOT copies a claim or a lease renewal writes (neither
    # changes an indexed column): no index entry per update, and pruning on the page;
    # 70 made parked rows take 15% more room than 90 (bench/queue_churn.py), for no
    # more HOT updates there
    "fillfactor": "90",
    # vacuum once 50 + 1% of the rows are dead: a queue of many parked rows (sleeping
    # and waiting runs) with the default 20% waits for thousands of dead ones, while
    # every run's row is inserted and deleted
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "50",
    # the claim's plan reads due_at's distribution: keep its statistics fresh
    "autovacuum_analyze_scale_factor": "0.02",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    options = ", ".join(f"{k} = {v}" for k, v in QUEUE_OPTIONS.items())
    op.execute(f"ALTER TABLE queue SET ({options})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE queue RESET ({', '.join(QUEUE_OPTIONS)})")
