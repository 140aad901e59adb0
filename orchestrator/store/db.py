"""The database: engine, backend hooks (SQLite or PostgreSQL, chosen by URL), transactions.

All SQL is in the ``store`` package; the engine works through ``Store.write()`` and
``Store.read()``, which hand out a ``Tx`` of per-aggregate repositories.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from orchestrator.errors import ApiError, DatabaseUnavailable, StorageFull
from orchestrator.loops import Health, supervise
from orchestrator.store import schema
from orchestrator.store.fastpath import PgPlan, Plan
from orchestrator.store.models import metadata
from orchestrator.store.schema import SchemaError as SchemaError

_SQLITE_DIALECT = sqlite.dialect()
_PG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
log = logging.getLogger("orchestrator.store")


class Backend:
    """What differs between databases; everything else is portable SQL."""

    name = "generic"

    def insert(self, table: Any) -> Any:  # dialect insert with on_conflict_* support
        raise NotImplementedError

    def least(self, a: Any, b: Any) -> Any:
        """The smaller of two values (scalar)."""
        return func.least(a, b)

    def is_retryable(self, exc: BaseException) -> bool:
        """A transaction that failed this way may simply be run again: here, its
        connection was lost before its commit was sent (nothing of it was written)."""
        return isinstance(exc, ConnectionLost)

    def prepare(self, stmt: Any) -> Any:
        """What ``store.base.prepared`` keeps for a hot statement (the statement itself,
        or a faster equivalent the backend's connections know how to run)."""
        return stmt

    def lock(self, key: str) -> Any | None:
        """A statement taking a lock on ``key`` until the transaction ends, serializing
        read-then-write transactions across replicas (None: writers are already serial)."""
        return None

    def lock_shared(self, keys: Sequence[str]) -> Any | None:
        """One statement taking ``lock`` on each of ``keys`` in shared mode (in order):
        shared holders do not exclude each other, only an exclusive ``lock`` on the same
        key (None: writers are already serial)."""
        return None

    def failure(self, exc: BaseException) -> str | None:
        """"unavailable" if ``exc`` says the database cannot be reached (the request may
        be sent again later), "busy" if another process kept it locked past the busy
        timeout (the same for the caller), "full" if it has no room for the write, else
        None."""
        for e in _chain(exc):
            if getattr(e, "connection_invalidated", False) or isinstance(
                    e, ConnectionError | TimeoutError | InjectedFault):
                return "unavailable"
            if isinstance(e, OSError) and not isinstance(e, sqlite3.Error):
                return "unavailable"
        return None


def _chain(exc: BaseException) -> list[BaseException]:
    """An exception, what it wraps (SQLAlchemy's ``orig``) and its causes."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(out) < 10:
        e = todo.pop()
        if e is None or any(e is o for o in out):
            continue
        out.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return out


def driver_reason(exc: BaseException) -> str:
    """The driver's reason for ``exc``, without the SQL or parameters SQLAlchemy adds."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).split("\n", 1)[0][:200]
    return f"{type(orig).__name__}: {first}"


class ConnectionLost(DatabaseUnavailable):
    """The database could not be reached, or the connection was lost, before the
    transaction's commit was sent: nothing of it was written, and it may be run again
    (``Store.transact`` does, a few times). A failure during the commit itself is a plain
    ``DatabaseUnavailable``: whether it committed is unknown, so it is not run again."""


class InjectedFault(ConnectionResetError):
    """A statement failed on purpose (the test hook ``DURABLE_TEST_FAULT_RATE``)."""


class SQLiteBackend(Backend):
    name = "sqlite"

    def insert(self, table: Any) -> sqlite.Insert:
        return sqlite.insert(table)

    def least(self, a: Any, b: Any) -> Any:
        return func.min(a, b)  # SQLite's scalar min()

    def prepare(self, stmt: Any) -> Any:
        return Plan.build(stmt, _SQLITE_DIALECT) or stmt

    FULL = 13  # SQLITE_FULL
    UNAVAILABLE = frozenset({10, 14})  # SQLITE_IOERR, SQLITE_CANTOPEN
    BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED: past the busy timeout

    def failure(self, exc: BaseException) -> str | None:
        for e in _chain(exc):
            code = getattr(e, "sqlite_errorcode", None)
            if isinstance(code, int):
                if code & 0xFF == self.FULL:
                    return "full"
                if code & 0xFF in self.UNAVAILABLE:
                    return "unavailable"
                if code & 0xFF in self.BUSY:
                    return "busy"
        return super().failure(exc)


class PostgresBackend(Backend):
    name = "postgresql"

    RETRYABLE = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure

    def is_retryable(self, exc: BaseException) -> bool:
        # SQLAlchemy wraps the driver's error (``orig``); a plan raises asyncpg's own
        state = getattr(getattr(exc, "orig", exc), "sqlstate", None)
        return state in self.RETRYABLE or super().is_retryable(exc)

    def failure(self, exc: BaseException) -> str | None:
        for e in _chain(exc):
            state = getattr(e, "sqlstate", None)
            # class 08: connection exceptions; 57P01-03: the server shuts down, crashed,
            # or is starting up
            if isinstance(state, str) and (state.startswith("08") or state in
                                           ("57P01", "57P02", "57P03")):
                return "unavailable"
            if type(e).__name__ == "InterfaceError" and "closed" in str(e):
                return "unavailable"  # asyncpg: "connection is closed"
            if type(e).__name__ == "InternalClientError" and "another operation" in str(e):
                # asyncpg, before sending: its protocol is still consuming an error, as
                # after the server's FATAL on shutdown arrived between two statements
                # (the connection is as good as lost; nothing of this statement was sent)
                return "unavailable"
        return super().failure(exc)

    def insert(self, table: Any) -> postgresql.Insert:
        return postgresql.insert(table)

    def prepare(self, stmt: Any) -> Any:
        return PgPlan.build(stmt, _PG_DIALECT) or stmt

    def lock(self, key: str) -> Any:
        return select(func.pg_advisory_xact_lock(func.hashtext(key)))

    def lock_shared(self, keys: Sequence[str]) -> Any:
        return select(*(func.pg_advisory_xact_lock_shared(func.hashtext(k)) for k in keys))


def normalize_url(url: str) -> str:
    if url.startswith("sqlite+aiosqlite://"):  # embedded SQLite is driven synchronously
        return "sqlite://" + url[len("sqlite+aiosqlite://"):]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    return url


SYNCHRONOUS = ("full", "normal")
"""SQLite's ``synchronous`` modes the orchestrator runs with (``Settings.sqlite_synchronous``):
FULL fsyncs the WAL at every commit (what was acknowledged survives power loss); NORMAL only
at checkpoints (a power loss can drop the last commits; a process crash cannot)."""


SQLITE_CACHE_BYTES = 64 * 2**20
"""SQLite's page caches, all connections of the process together (a soft heap limit),
and one connection's at most."""
SQLITE_WAL_LIMIT_BYTES = 64 * 2**20
"""The size the WAL file is cut back to when SQLite starts it over after a checkpoint."""


def _sqlite_pragmas(synchronous: str) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"sqlite synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
    mode = synchronous.upper()

    def on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        _set_pragmas(dbapi_conn, mode)

    return on_connect


def _set_pragmas(dbapi_conn: DBAPIConnection, synchronous: str) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_BYTES // 1024}")
    # the process's bound (the pragma sets SQLite's one, process-wide): without it each
    # pooled connection's cache grew to the cache size as the database did (RSS 98 ->
    # 180 MiB at 100,000 sleeping runs, bench/sleepers.py); with it SQLite recycles the
    # least recently used pages of any connection beyond it
    cur.execute(f"PRAGMA soft_heap_limit={SQLITE_CACHE_BYTES}")
    cur.execute("PRAGMA temp_store=MEMORY")
    # else the WAL file keeps its largest size for good (758 MB after creating 1,000,000
    # sleeping runs, bench/sleepers.py): cut back when a write starts it over
    cur.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
    # checkpoints run in the background (Database._checkpointer), not inside a commit
    cur.execute("PRAGMA wal_autocheckpoint=0")
    # test hook (documented in docs/architecture.md): a database that fills up early
    pages = os.environ.get("DURABLE_TEST_SQLITE_MAX_PAGES")
    if pages:
        cur.execute(f"PRAGMA max_page_count={int(pages)}")
    cur.close()


class Conn(Protocol):
    """What repositories use of a connection: an awaitable ``execute``."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...


class SyncConn:
    """A synchronous SQLAlchemy connection behind the awaitable ``execute`` of ``Conn``.

    Embedded SQLite is driven synchronously on the event loop: a query on a local WAL
    file takes microseconds, far less than handing it to a driver thread and back (the
    aiosqlite path measured ~0.5 ms per statement, most of a one-step run's latency).
    Prepared hot statements (``Plan``) run straight on the driver connection, in the
    same transaction.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._driver: sqlite3.Connection | None = None

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if type(statement) is Plan:
            if self._driver is None:
                self._driver = self._conn.connection.driver_connection
            assert self._driver is not None
            result = statement.run(self._driver, parameters)
            if result is not None:
                return result
            statement = statement.stmt
        if parameters is None:
            return self._conn.execute(statement)
        return self._conn.execute(statement, parameters)


class PgConn:
    """SQLAlchemy's ``AsyncConnection`` behind ``Conn``; prepared hot statements (``PgPlan``)
    run on the asyncpg connection underneath, in the same transaction.

    SQLAlchemy's asyncpg adapter (greenlets, its own statement cache) cost about twice a
    statement's round trip. In a write transaction a plan first makes the adapter open
    its transaction (as its own first statement would); in a read, plans run each in its
    own implicit transaction, which under READ COMMITTED sees what a statement of an
    explicit one would, and saves the BEGIN and ROLLBACK round trips.

    A write transaction ends with ``commit`` or ``rollback``: straight on the asyncpg
    connection when only plans ran in it (the hot transactions), without SQLAlchemy's
    transaction objects and their greenlet hops; through SQLAlchemy when one of its
    statements ran (it then holds the transaction).
    """

    adapter_warned = False
    """Whether the warning that plans cannot run on this adapter was logged (once)."""

    def __init__(self, conn: AsyncConnection, *, write: bool) -> None:
        self._conn = conn
        self._write = write
        self._adapted: Any = None

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if type(statement) is PgPlan:
            adapted = self._adapted
            if adapted is None:
                raw = await self._conn.get_raw_connection()
                adapted = self._adapted = raw.dbapi_connection
            if hasattr(adapted, "_start_transaction") and hasattr(adapted, "_transaction"):
                if self._write and adapted._transaction is None:
                    await adapted._start_transaction()
                result = await statement.run(adapted._connection, parameters)
                if result is not None:
                    return result
            elif not PgConn.adapter_warned:
                PgConn.adapter_warned = True
                log.warning("SQLAlchemy's asyncpg adapter (%s) lacks the internals the fast "
                            "path joins its transaction with; SQLAlchemy runs every statement",
                            type(adapted).__name__)
            statement = statement.stmt
        if parameters is None:
            return await self._conn.execute(statement)
        return await self._conn.execute(statement, parameters)

    def _direct(self) -> Any:
        """The asyncpg transaction a plan opened, when SQLAlchemy has none (else None)."""
        if self._conn.in_transaction() or self._adapted is None:
            return None
        return getattr(self._adapted, "_transaction", None)

    async def commit(self) -> None:
        """Commit; a connection the commit fails on is invalidated (the pool does not lend
        it again: it is most likely lost), and the failure raised."""
        direct = self._direct()
        if direct is None:
            if self._conn.in_transaction():
                await self._conn.commit()  # SQLAlchemy invalidates a lost connection itself
            return
        self._adapted._transaction = None  # as the adapter's own commit leaves it
        try:
            await direct.commit()
        except BaseException:
            await self._drop()
            raise

    async def rollback(self) -> None:
        """Roll back (after the work failed: its error is what the caller raises); a
        connection the rollback fails on is invalidated instead (the server ends the
        transaction of a connection that goes)."""
        try:
            direct = self._direct()
            if direct is None:
                if self._conn.in_transaction():
                    await self._conn.rollback()
                return
            self._adapted._transaction = None
            await direct.rollback()
        except Exception as exc:
            log.debug("rollback failed (%s): the connection is dropped", driver_reason(exc))
            await self._drop()

    async def _drop(self) -> None:
        with contextlib.suppress(Exception):
            await self._conn.invalidate()

    async def settle_failure(self, exc: BaseException) -> None:
        """After the work failed with ``exc``: a connection that saw a driver error (or an
        interruption) is not lent again. asyncpg may still be consuming that error's
        messages (its protocol's ``ERROR_CONSUME`` state) when the error is raised, and
        nothing on the way back to SQLAlchemy's pool waits for it: the next transaction
        on that connection then failed with "another operation is in progress"."""
        if not isinstance(exc, Exception) or _driver_error(exc):
            await self._drop()


def _driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps) an error of the database driver or the connection."""
    return any(type(e).__module__.startswith(("asyncpg", "sqlalchemy"))
               or isinstance(e, OSError | ConnectionError) for e in _chain(exc))


class FaultyConn:
    """Test hook (``DURABLE_TEST_FAULT_RATE``): a share of statements fail, before they
    run, with a connection error, as they would while the database is unreachable."""

    def __init__(self, conn: Conn, rate: float, rng: random.Random) -> None:
        self._conn = conn
        self._rate = rate
        self._rng = rng

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if self._rng.random() < self._rate:
            raise InjectedFault("injected fault: the database connection was lost")
        return await self._conn.execute(statement, parameters)


def _create_schema(conn: Connection, upgrade: bool = False) -> None:
    """Create the tables of an empty database (and stamp it at the newest migration);
    migrate one behind if ``upgrade``, else refuse it (``SchemaError`` says what to run),
    and refuse one a newer orchestrator migrated."""
    schema.lock_conn(conn)  # replicas starting at once on an empty database: one creates
    st = schema.status_conn(conn)
    if st.empty and conn.dialect.name == "sqlite":
        # create_all and a stamp rather than the migrations: 17-24 ms against 51-71 ms
        # (medians of 15; tests make many databases); tests/e2e/test_migrations.py
        # checks that both give the same schema. PostgreSQL runs the migrations: they
        # also set the queue table's storage options (0003), which the models lack.
        metadata.create_all(conn)
        schema.stamp_head_conn(conn)
    elif st.empty:
        schema.upgrade_conn(conn)
    elif upgrade and st.revision != schema.head():
        before, now = schema.upgrade_conn(conn)
        log.info("migrated the database from %s to revision %s", before.describe(), now)
    else:
        schema.check_status(st)


class DatabaseInUse(RuntimeError):
    """Another orchestrator process has this SQLite file open."""


class Database:
    def __init__(self, url: str, *, pool_size: int = 40, synchronous: str = "full") -> None:
        self.url = normalize_url(url)
        self.backend: Backend
        self._engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        if self.url.startswith("sqlite"):
            self.backend = SQLiteBackend()
            self._sync_engine = create_engine(
                # the last connection used first: it wrote last, so its cache is still
                # valid (a connection's is dropped when another one wrote since it read)
                self.url, pool_size=4, max_overflow=4, pool_use_lifo=True,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            event.listen(self._sync_engine, "connect", _sqlite_pragmas(synchronous))
        elif self.url.startswith("postgresql"):
            self.backend = PostgresBackend()
            # a small overflow only: overflow connections are opened and closed again
            # under load (with asyncpg's TLS attempt, ~5 ms of CPU each: at 50 concurrent
            # runs the rate fell to ~50/s); a transaction beyond them waits for one
            self._engine = create_async_engine(self.url, pool_size=pool_size,
                                               max_overflow=max(2, pool_size // 4),
                                               pool_timeout=60)
        else:
            raise ValueError(f"unsupported database URL {url!r} (use sqlite:/// or postgresql://)")
        self._write_lock = asyncio.Lock()
        self._lock_file: IO[bytes] | None = None
        self._writes = 0  # write transactions so far (the checkpointer's cue)
        self._checkpointed = 0
        self._checkpoints: asyncio.Task[None] | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        """The last passive checkpoint's thread (``dispose`` waits for it)."""
        self.health = Health()
        self._full_at = 0.0  # when a write last failed for want of room
        self._pool_dropped_at = float("-inf")  # when the pool was last started afresh
        # test hook (docs/architecture.md): statements fail at this rate once the engine
        # has started (``inject_faults``)
        self._fault_env = float(os.environ.get("DURABLE_TEST_FAULT_RATE") or 0)
        self._fault_rate = 0.0
        self._fault_rng = random.Random(int(os.environ.get("DURABLE_TEST_FAULT_SEED") or 1))
        self.upgrade_on_open = False
        """``create_schema`` migrates a database behind the newest revision (``orchestrator
        dev`` sets it; ``serve`` refuses such a database: run ``orchestrator migrate``)."""

    @property
    def exclusive(self) -> bool:
        """Whether this process is the database's only orchestrator (embedded SQLite)."""
        return self._sync_engine is not None

    def _lock_sqlite(self) -> None:
        """Embedded SQLite has one orchestrator: a second one on the same file refuses to
        start instead of racing the first (use PostgreSQL for several replicas)."""
        path = self._sqlite_path()
        if path is None:
            return
        self._lock_file = open(path + ".lock", "wb")  # held (locked) while open
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise DatabaseInUse(f"another orchestrator is using {path}; one process per "
                                f"SQLite file (use PostgreSQL for several)") from None

    async def create_schema(self) -> None:
        """Create the schema of an empty database; check (or, ``upgrade_on_open``,
        migrate) that of one in use."""
        if self._sync_engine is not None:
            self._lock_sqlite()
            with self._sync_engine.begin() as conn:
                _create_schema(conn, self.upgrade_on_open)
            if self._sqlite_path() is not None:
                self._checkpoints = asyncio.create_task(
                    supervise("checkpointer", self._checkpoint_pass, self.health),
                    name="checkpointer")
        else:
            assert self._engine is not None
            async with self._engine.begin() as aconn:
                await aconn.run_sync(_create_schema, self.upgrade_on_open)

    def _sqlite_path(self) -> str | None:
        path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        return path if path and path != ":memory:" else None

    def _checkpoint(self, mode: str) -> None:
        path = self._sqlite_path()
        assert path is not None
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        finally:
            conn.close()

    async def _checkpoint_pass(self, every: float = 0.5) -> None:
        """Copy the WAL into the database file off the event loop (one pass of the
        supervised ``checkpointer`` loop).

        SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages:
        every so often one transaction of a run paid milliseconds for it (the latency
        tail). A PASSIVE checkpoint in a thread (sqlite3 releases the GIL while it works)
        blocks no reader and no writer."""
        await asyncio.sleep(every)
        if self._writes != self._checkpointed:
            self._checkpointed = self._writes
            # shielded: cancelling the loop (``dispose``) cannot stop the thread, so
            # ``dispose`` waits for it before its own checkpoint (else that one found the
            # WAL busy and left it full)
            self._checkpointing = asyncio.ensure_future(
                asyncio.to_thread(self._checkpoint, "PASSIVE"))
            try:
                await asyncio.shield(self._checkpointing)
            except sqlite3.Error as exc:  # busy, I/O: the next pass tries again
                log.warning("WAL checkpoint failed: %s", exc)

    def _failed(self, exc: Exception, *, committing: bool = False) -> None:
        """Raise ``exc`` as DatabaseUnavailable or StorageFull if it is one of those
        (``ConnectionLost`` if the database was unreachable before the commit was sent).

        What the client reads names no SQL and no data (SQLAlchemy's message carries
        both); the driver's reason goes to the health report (``/readyz``) and the log."""
        kind = self.backend.failure(exc)
        if kind == "unavailable":
            self.health.failed("database", driver_reason(exc))
            self._drop_pool(exc)
            error = DatabaseUnavailable if committing else ConnectionLost
            raise error("the database is unavailable; retry later") from exc
        if kind == "busy":  # another process holds the write lock: not down, retry later
            log.warning("the database stayed locked past the busy timeout: %s", driver_reason(exc))
            raise DatabaseUnavailable("the database is busy (locked by another process); "
                                      "retry later") from exc
        if kind == "full":
            self._full_at = time.monotonic()
            self.health.failed("storage", driver_reason(exc))
            raise StorageFull("the database is full: no room to store this write") from exc

    def _drop_pool(self, exc: Exception) -> None:
        """A connection was lost: the pool's other connections, opened before, are most
        likely dead too (a server restart ends them all). Start a new pool, so that no
        later transaction draws one of them and fails in turn; the old connections are
        not closed (they are dead: closing could wait on them), just dropped, and those
        checked out go when returned. At most once a second; not for the test hook's
        injected faults, whose connections are fine (they are logged instead)."""
        if any(isinstance(e, InjectedFault) for e in _chain(exc)):
            log.warning("test hook: %s", driver_reason(exc))  # retried: say it happened
            return
        if self._engine is None:
            return
        now = time.monotonic()
        if now - self._pool_dropped_at < 1.0:
            return
        self._pool_dropped_at = now
        self._engine.sync_engine.dispose(close=False)
        log.warning("a database connection was lost (%s): the pool starts afresh",
                    driver_reason(exc))

    def storage_problem(self) -> str | None:
        """Why writes cannot be stored now (a write failed for want of room in the last
        30 s, or SQLite has almost no pages or disk left), or None."""
        if self._full_at and time.monotonic() - self._full_at < 30:
            return self.health.failing.get("storage", "the database is full")
        path = self._sqlite_path()
        if self._sync_engine is None or path is None:
            self.health.ok("storage")
            return None
        with self._sync_engine.connect() as conn:
            count, free, most = (conn.exec_driver_sql(f"PRAGMA {p}").scalar_one() for p in
                                 ("page_count", "freelist_count", "max_page_count"))
        disk = os.statvfs(os.path.dirname(os.path.abspath(path)))
        if most - count + free < 8:
            return f"the database is at its max_page_count ({most} pages)"
        if disk.f_bavail * disk.f_frsize < 1 << 20:
            return f"less than 1 MiB free on the disk of {path}"
        self.health.ok("storage")
        return None

    async def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
            if self._checkpointing is not None:  # a passive checkpoint still in its thread
                with contextlib.suppress(Exception):
                    await self._checkpointing
            with contextlib.suppress(sqlite3.Error):
                self._checkpoint("TRUNCATE")  # leave a compact file behind
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None
        if self._engine is not None:
            await self._engine.dispose()

    def inject_faults(self) -> None:
        """Start failing statements at ``DURABLE_TEST_FAULT_RATE`` (if set; a test hook)."""
        if self._fault_env:
            log.warning("test hook: failing %.0f%% of statements", self._fault_env * 100)
            self._fault_rate = self._fault_env

    def _conn(self, conn: Conn) -> Conn:
        return FaultyConn(conn, self._fault_rate, self._fault_rng) if self._fault_rate else conn

    @asynccontextmanager
    async def write_conn(self) -> AsyncIterator[Conn]:
        """A connection in a write transaction, committed on exit (rolled back on error).
        A connection failure raises DatabaseUnavailable (``ConnectionLost`` before the
        commit); no room, StorageFull."""
        committing = False
        try:
            if self._sync_engine is not None:
                async with self._write_lock:
                    with self._sync_engine.begin() as conn:
                        yield self._conn(SyncConn(conn))
                        committing = True
                    self._writes += 1
            else:
                assert self._engine is not None
                async with self._engine.connect() as aconn:
                    pg = PgConn(aconn, write=True)
                    try:
                        yield self._conn(pg)
                    except BaseException as exc:
                        await pg.rollback()
                        await pg.settle_failure(exc)
                        raise
                    committing = True  # the work is done: what fails now is the commit
                    await pg.commit()
        except ApiError:
            raise
        except Exception as exc:
            self._failed(exc, committing=committing)
            raise
        self.health.ok("database")

    @asynccontextmanager
    async def read_conn(self) -> AsyncIterator[Conn]:
        try:
            if self._sync_engine is not None:
                with self._sync_engine.connect() as conn:
                    yield self._conn(SyncConn(conn))
            else:
                assert self._engine is not None
                async with self._engine.connect() as aconn:
                    pg = PgConn(aconn, write=False)
                    try:
                        yield self._conn(pg)
                    except BaseException as exc:
                        await pg.settle_failure(exc)
                        raise
        except ApiError:
            raise
        except Exception as exc:
            self._failed(exc)
            raise
