"""Alembic's environment: migrations run on the connection ``orchestrator.store.migrate``
passes in ``config.attributes["connection"]`` (already in its transaction, holding the
migration lock); there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from orchestrator.store.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `orchestrator migrate` "
                       "(orchestrator.store.migrate passes the connection)")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
