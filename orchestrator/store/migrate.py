"""Schema migrations (Alembic; the revisions are in ``store/migrations/versions``).

Configured here, in code: no alembic.ini. Migrations run on a connection this module
opens, in one transaction, after taking the migration lock (PostgreSQL: an advisory
lock, so replicas starting at once migrate one after another; SQLite: ``BEGIN
IMMEDIATE``). Databases made before migrations (``create_all``, no ``alembic_version``
table) are recognized by ``meta.schema_version`` and stamped at the revision of that
schema before upgrading.

``upgrade``, ``current``, ``head``, ``check`` take a database URL; the ``*_conn``
functions a sync connection already in its transaction (``Database.create_schema`` runs
them through ``AsyncConnection.run_sync`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, func, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from orchestrator.store.db import SchemaError, normalize_url
from orchestrator.store.models import meta

T = TypeVar("T")
# Alembic's own INFO lines (its context, each revision it runs) stay out of the
# orchestrator's log: `orchestrator migrate` and the start-up log say what was migrated
logging.getLogger("alembic").setLevel(logging.WARNING)
SCRIPTS = Path(__file__).resolve().parent / "migrations"

LEGACY = {4: "0001", 5: "0002"}
"""``meta.schema_version`` of a database made before migrations -> the revision holding
that schema (it is stamped there before upgrading)."""

LOCK_KEY = "orchestrator.schema"
"""The PostgreSQL advisory lock (``hashtext`` of it) migrations and schema creation hold."""


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code; ``connection`` is what env.py migrates."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision: the schema this orchestrator needs."""
    rev = _scripts().get_current_head()
    assert rev is not None
    return rev


@dataclass(frozen=True)
class Status:
    """What a database holds: nothing, a stamped revision, or a pre-migration schema."""

    empty: bool
    revision: str | None = None
    legacy_version: int | None = None
    """``meta.schema_version`` of an unstamped database (1: no meta table)."""

    def describe(self) -> str:
        if self.empty:
            return "empty"
        if self.revision is not None:
            return f"revision {self.revision}"
        return f"schema version {self.legacy_version} (before migrations)"


def status_conn(conn: Connection) -> Status:
    names = set(inspect(conn).get_table_names())
    if "alembic_version" in names:
        rev = MigrationContext.configure(conn).get_current_revision()
        if rev is not None:
            return Status(False, revision=rev)
    if "runs" not in names:
        return Status(True)
    version = 1
    if "meta" in names:
        row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
        version = int(row[0]) if row else 1
    return Status(False, legacy_version=version)


def _known(rev: str) -> bool:
    return rev in {s.revision for s in _scripts().walk_revisions()}


def check_status(st: Status) -> None:
    """Raise ``SchemaError`` unless the database is at head (or empty)."""
    if st.empty or st.revision == head():
        return
    if st.revision is not None and not _known(st.revision):
        raise SchemaError(
            f"the database's schema is at revision {st.revision}, newer than this "
            f"orchestrator knows (its newest is {head()}): a newer orchestrator migrated "
            f"it; run that version")
    if st.revision is None and st.legacy_version not in LEGACY:
        raise SchemaError(_too_old(st))
    raise SchemaError(
        f"the database's schema is at {st.describe()}; this orchestrator needs revision "
        f"{head()}: run `orchestrator migrate` (with the same --database-url)")


def _too_old(st: Status) -> str:
    return (f"the database has schema version {st.legacy_version}, older than the first "
            f"migration (schema version {min(LEGACY)}): use a new database (for `make "
            f"run`, delete .durable/dev.db)")


def lock_conn(conn: Connection) -> None:
    """Hold the migration lock until the transaction ends (PostgreSQL; SQLite's
    connections here begin with ``BEGIN IMMEDIATE``, which serializes writers)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(LOCK_KEY))))


def stamp_head_conn(conn: Connection) -> None:
    """Record a database just made by ``metadata.create_all`` as being at head."""
    MigrationContext.configure(conn).stamp(_scripts(), "head")


def upgrade_conn(conn: Connection, *, create: bool = True) -> tuple[Status, str]:
    """Migrate to head (stamping a pre-migration database first); what the database was
    and the revision it is at now. ``create=False`` leaves an empty database empty."""
    lock_conn(conn)
    before = status_conn(conn)
    if before.empty and not create:
        return before, head()
    if before.revision is not None and not _known(before.revision):
        check_status(before)  # newer than this orchestrator: raises
    if before.revision is None and not before.empty:
        rev = LEGACY.get(before.legacy_version or 1)
        if rev is None:
            raise SchemaError(_too_old(before))
        MigrationContext.configure(conn).stamp(_scripts(), rev)
    command.upgrade(config(conn), "head")
    return before, head()


def downgrade_conn(conn: Connection, revision: str) -> None:
    lock_conn(conn)
    command.downgrade(config(conn), revision)


def _begin_immediate(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the transaction is ours: BEGIN IMMEDIATE below


def on_connection(url: str, fn: Callable[[Connection], T]) -> T:
    """``fn`` on a sync connection to ``url``, in one transaction (committed if it
    returns): SQLite's begun with ``BEGIN IMMEDIATE``, PostgreSQL's through asyncpg
    (``AsyncConnection.run_sync``; no sync driver is needed)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
        event.listen(engine, "connect", _begin_immediate)
        event.listen(engine, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    async def run() -> T:
        aengine = create_async_engine(url, poolclass=NullPool)
        try:
            async with aengine.begin() as aconn:
                return await aconn.run_sync(fn)
        finally:
            await aengine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # called from a coroutine (it blocks it): the migration runs on a loop of its own
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def upgrade(url: str, *, create: bool = True) -> tuple[Status, str]:
    """Migrate the database at ``url`` to head; what it was, and head. Idempotent."""
    return on_connection(url, lambda conn: upgrade_conn(conn, create=create))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (tests, and undoing one)."""
    on_connection(url, lambda conn: downgrade_conn(conn, revision))


def status(url: str) -> Status:
    return on_connection(url, status_conn)


def current(url: str) -> str | None:
    """The database's revision (None: empty, or made before migrations)."""
    return status(url).revision


def check(url: str) -> None:
    """``SchemaError`` unless the database at ``url`` is at head or empty: behind (it
    names the command to run) or ahead (a newer orchestrator migrated it)."""
    check_status(status(url))
