"""Schema version 4: the tables as databases made before migrations hold them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("api_keys", "apps", "crons", "events", "functions", "meta", "queue", "runs",
          "schedules", "steps", "triggers", "waits", "webhook_sources")


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('prefix', sa.String(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.Column('scopes', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('revoked_at', sa.Float(), nullable=True),
    sa.Column('last_used_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    op.create_table('apps',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('sdk', sa.String(), nullable=False),
    sa.Column('synced_at', sa.Float(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('probe_at', sa.Float(), nullable=True),
    sa.Column('probe_failures', sa.Integer(), nullable=False),
    sa.Column('signing_key', sa.Text(), nullable=True),
    sa.Column('signing_key_fallback', sa.Text(), nullable=True),
    sa.Column('budget_ms', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url')
    )
    op.create_table('crons',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('function', sa.String(), nullable=False),
    sa.Column('expression', sa.String(), nullable=False),
    sa.Column('timezone', sa.String(), nullable=False),
    sa.Column('input_json', sa.Text(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('next_fire_at', sa.Float(), nullable=True),
    sa.Column('last_fire_at', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_crons_function'), 'crons', ['function'], unique=False)
    op.create_index(op.f('ix_crons_next_fire_at'), 'crons', ['next_fire_at'], unique=False)
    op.create_table('events',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('data_json', sa.Text(), nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('run_ids_json', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_events_name'), 'events', ['name'], unique=False)
    op.create_table('functions',
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('app_id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('config_json', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_index(op.f('ix_functions_app_id'), 'functions', ['app_id'], unique=False)
    op.create_table('meta',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('queue',
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('due_at', sa.Float(), nullable=False),
    sa.Column('lease_owner', sa.String(), nullable=True),
    sa.Column('lease_expires_at', sa.Float(), nullable=True),
    sa.Column('claims', sa.BigInteger(), nullable=False),
    sa.Column('delivery_failures', sa.Integer(), nullable=False),
    sa.Column('first_failure_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('run_id')
    )
    op.create_index(op.f('ix_queue_due_at'), 'queue', ['due_at'], unique=False)
    op.create_table('runs',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('function', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('input_json', sa.Text(), nullable=False),
    sa.Column('event_json', sa.Text(), nullable=True),
    sa.Column('output_json', sa.Text(), nullable=True),
    sa.Column('error_json', sa.Text(), nullable=True),
    sa.Column('waiting_json', sa.Text(), nullable=True),
    sa.Column('parent_id', sa.String(), nullable=True),
    sa.Column('parent_step', sa.String(), nullable=True),
    sa.Column('task', sa.String(), nullable=True),
    sa.Column('parents_json', sa.Text(), nullable=True),
    sa.Column('child_index', sa.Integer(), nullable=False),
    sa.Column('parent_waits', sa.Boolean(), nullable=False),
    sa.Column('pending_children', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('timeout_at', sa.Float(), nullable=True),
    sa.Column('start_timeout_at', sa.Float(), nullable=True),
    sa.Column('history_json', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('function', 'idempotency_key', name='uq_runs_idempotency')
    )
    op.create_index('ix_runs_function_id', 'runs', ['function', 'id'], unique=False)
    op.create_index('ix_runs_parent', 'runs', ['parent_id', 'parent_step'], unique=False)
    op.create_index(op.f('ix_runs_start_timeout_at'), 'runs', ['start_timeout_at'], unique=False)
    op.create_index('ix_runs_status_id', 'runs', ['status', 'id'], unique=False)
    op.create_index(op.f('ix_runs_timeout_at'), 'runs', ['timeout_at'], unique=False)
    op.create_table('schedules',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('function', sa.String(), nullable=False),
    sa.Column('input_json', sa.Text(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_schedules_at'), 'schedules', ['at'], unique=False)
    op.create_index(op.f('ix_schedules_function'), 'schedules', ['function'], unique=False)
    op.create_table('steps',
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('step_id', sa.String(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('output_json', sa.Text(), nullable=True),
    sa.Column('error_json', sa.Text(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('run_id', 'step_id')
    )
    op.create_table('triggers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(), nullable=False),
    sa.Column('function', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_triggers_event'), 'triggers', ['event'], unique=False)
    op.create_index(op.f('ix_triggers_function'), 'triggers', ['function'], unique=False)
    op.create_table('waits',
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('step_id', sa.String(), nullable=False),
    sa.Column('purpose', sa.String(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('event', sa.String(), nullable=False),
    sa.Column('match_fields', sa.String(), nullable=False),
    sa.Column('match_key', sa.String(), nullable=False),
    sa.Column('match_json', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'step_id')
    )
    op.create_index('ix_waits_event_key', 'waits', ['event', 'match_key'], unique=False)
    op.create_table('webhook_sources',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('previous_secret', sa.Text(), nullable=True),
    sa.Column('previous_until', sa.Float(), nullable=True),
    sa.Column('sig_header', sa.String(), nullable=False),
    sa.Column('sig_algorithm', sa.String(), nullable=False),
    sa.Column('sig_encoding', sa.String(), nullable=False),
    sa.Column('sig_prefix', sa.String(), nullable=False),
    sa.Column('tolerance', sa.Float(), nullable=False),
    sa.Column('event_from', sa.String(), nullable=False),
    sa.Column('event_key', sa.String(), nullable=False),
    sa.Column('event_prefix', sa.String(), nullable=False),
    sa.Column('id_from', sa.String(), nullable=False),
    sa.Column('id_key', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # its indexes go with it
