"""An index on waits (event, match_fields): an event learns the few distinct field sets
its name's waits match on by a loose index scan (``WaitsRepo.take_matching``), one entry
per field set, not every wait of the name (100,000 runs waiting for an event keyed by
customer: 81 -> a few ms from the event to its run's end, bench/waits.py).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_waits_event_fields", "waits", ["event", "match_fields"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_waits_event_fields", table_name="waits")
