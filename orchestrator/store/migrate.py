"""Schema migrations on a database URL: ``orchestrator migrate``, tests, benchmarks.

Migrations run on a connection this module opens, in one transaction, after taking the
migration lock (PostgreSQL: an advisory lock, so replicas starting at once migrate one
after another; SQLite: the connection begins with ``BEGIN IMMEDIATE``). The revisions,
stamping and the checks are in ``store/schema.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from orchestrator.store.db import normalize_url
from orchestrator.store.schema import (
    LEGACY,
    SchemaError,
    Status,
    check_status,
    downgrade_conn,
    head,
    status_conn,
    upgrade_conn,
)

__all__ = ["LEGACY", "SchemaError", "Status", "check", "current", "downgrade", "head",
           "on_connection", "status", "upgrade"]
T = TypeVar("T")


def on_connection(url: str, fn: Callable[[Connection], T]) -> T:
    """``fn`` on a sync connection to ``url``, in one transaction (committed if it
    returns); PostgreSQL's through asyncpg (``AsyncConnection.run_sync``: no sync driver
    is needed)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
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


def upgrade(url: str) -> tuple[Status, str]:
    """Migrate the database at ``url`` to head; what it was, and head. Idempotent."""
    return on_connection(url, upgrade_conn)


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
