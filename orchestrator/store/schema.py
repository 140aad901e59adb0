"""The schema's revisions (Alembic, configured in code: no alembic.ini; the revisions
are in ``store/migrations/versions``), on a sync connection already in its transaction:
what a database holds, whether it is at head, stamping, upgrading.

``Database.create_schema`` runs these at start (on PostgreSQL through
``AsyncConnection.run_sync``); ``store/migrate.py`` runs them on a database URL
(``orchestrator migrate``). Databases made before migrations (``create_all``, no
``alembic_version`` table) are recognized by ``meta.schema_version`` and stamped at the
revision of that schema before upgrading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, delete, func, inspect, select

from orchestrator.store.models import meta

log = logging.getLogger("orchestrator.store")


class SchemaError(RuntimeError):
    """The database's schema is not this orchestrator's: behind (the message names the
    command to run), newer, or older than the first migration."""


# Alembic's own INFO lines (its context, each revision it runs) stay out of the
# orchestrator's log: `orchestrator migrate` and the start-up log say what was migrated
logging.getLogger("alembic").setLevel(logging.WARNING)
SCRIPTS = Path(__file__).resolve().parent / "migrations"

LEGACY = {4: "0001", 5: "0002"}
"""``meta.schema_version`` of a database made before migrations -> the revision holding
that schema (it is stamped there before upgrading)."""

COMPATIBLE_FROM = "0004"
"""The oldest revision whose orchestrator still runs on this version's schema, written to
``meta.compatible_from`` by every migration: during a rolling upgrade the replicas not yet
replaced start on the newer schema when their own newest revision is at least this one.
An additive migration (docs/operations.md, "Upgrades") leaves it as it is; a step an
older version cannot run on (dropping what it reads, a new NOT NULL column without a
default) moves it to that step's revision."""

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
    compatible_from: str | None = None
    """``meta.compatible_from``: the oldest revision whose orchestrator runs on it."""

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
            row = conn.execute(select(meta.c.value)
                               .where(meta.c.key == "compatible_from")).first()
            return Status(False, revision=rev, compatible_from=row[0] if row else None)
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
        if st.compatible_from is not None and _known(st.compatible_from):
            log.warning("the database's schema is at revision %s, newer than this "
                        "orchestrator knows (its newest is %s); it runs on it (the schema "
                        "is compatible from revision %s: a rolling upgrade)", st.revision,
                        head(), st.compatible_from)
            return
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
    """Hold the schema lock until the transaction ends: PostgreSQL's advisory lock;
    SQLite's write lock, taken at once (``BEGIN IMMEDIATE``, which also makes the DDL
    that follows one transaction: pysqlite begins none before DDL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(LOCK_KEY))))
    elif conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        if driver is not None and not driver.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def stamp_head_conn(conn: Connection) -> None:
    """Record a database just made by ``metadata.create_all`` as being at head."""
    MigrationContext.configure(conn).stamp(_scripts(), "head")
    _write_compatible_from(conn)


def _write_compatible_from(conn: Connection) -> None:
    conn.execute(delete(meta).where(meta.c.key == "compatible_from"))
    conn.execute(meta.insert().values(key="compatible_from", value=COMPATIBLE_FROM))


def upgrade_conn(conn: Connection) -> tuple[Status, str]:
    """Migrate to head (stamping a pre-migration database first); what the database was
    and the revision it is at now."""
    lock_conn(conn)
    before = status_conn(conn)
    if before.revision is not None and not _known(before.revision):
        check_status(before)  # newer than this orchestrator: raises, unless compatible
        return before, before.revision  # a newer one migrated it: nothing to do here
    if before.revision is None and not before.empty:
        rev = LEGACY.get(before.legacy_version or 1)
        if rev is None:
            raise SchemaError(_too_old(before))
        MigrationContext.configure(conn).stamp(_scripts(), rev)
    command.upgrade(config(conn), "head")
    _write_compatible_from(conn)
    return before, head()


def downgrade_conn(conn: Connection, revision: str) -> None:
    lock_conn(conn)
    command.downgrade(config(conn), revision)
