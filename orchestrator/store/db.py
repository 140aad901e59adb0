"""The database: engine, backend hooks (SQLite or PostgreSQL, chosen by URL), transactions.

All SQL is in the ``store`` package; the engine works through ``Store.write()`` and
``Store.read()``, which hand out a ``Tx`` of per-aggregate repositories.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import Insert

from orchestrator.store.models import metadata


class Backend:
    """What differs between databases; everything else is portable SQL."""

    name = "generic"
    single_writer = False

    def insert(self, table: Any) -> Any:  # dialect insert with on_conflict_* support
        raise NotImplementedError

    def least(self, a: Any, b: Any) -> Any:
        """The smaller of two values (scalar)."""
        return func.least(a, b)

    @staticmethod
    def is_unique_violation(exc: Exception) -> bool:
        return isinstance(exc, IntegrityError)


class SQLiteBackend(Backend):
    name = "sqlite"
    single_writer = True  # one writer at a time; an in-process lock makes writers queue

    def insert(self, table: Any) -> sqlite.Insert:
        return sqlite.insert(table)

    def least(self, a: Any, b: Any) -> Any:
        return func.min(a, b)  # SQLite's scalar min()


class PostgresBackend(Backend):
    name = "postgresql"

    def insert(self, table: Any) -> postgresql.Insert:
        return postgresql.insert(table)


def normalize_url(url: str) -> str:
    if url.startswith("sqlite:///") or url.startswith("sqlite://"):
        return "sqlite+aiosqlite" + url[len("sqlite"):]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    return url


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.backend: Backend
        if self.url.startswith("sqlite"):
            self.backend = SQLiteBackend()
            self.engine: AsyncEngine = create_async_engine(
                self.url, pool_size=8, max_overflow=8, connect_args={"timeout": 30}
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        elif self.url.startswith("postgresql"):
            self.backend = PostgresBackend()
            self.engine = create_async_engine(self.url, pool_size=20, max_overflow=20)
        else:
            raise ValueError(f"unsupported database URL {url!r} (use sqlite:/// or postgresql://)")
        self._write_lock = asyncio.Lock()

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def write_conn(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed on exit (rolled back on error)."""
        if self.backend.single_writer:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read_conn(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


def on_conflict_nothing(ins: Insert, *cols: str) -> Any:
    return ins.on_conflict_do_nothing(index_elements=list(cols))  # type: ignore[attr-defined]
