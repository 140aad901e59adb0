"""The PostgreSQL fast path (``fastpath.PgPlan`` run by ``db.PgConn``) against a real
PostgreSQL: plans give what SQLAlchemy gives, and join the write transaction; a write
transaction of plans only is committed and rolled back on the asyncpg connection
directly, retried when its connection was lost before the commit, not when during."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text

from orchestrator.errors import DatabaseUnavailable
from orchestrator.store import Store, Tx
from orchestrator.store import queue as queue_mod
from orchestrator.store import runs as runs_mod
from orchestrator.store.db import PgConn, PostgresBackend
from orchestrator.store.fastpath import PgPlan
from tests.support.pg import PgCluster
from tests.unit.test_fastpath import prepared_getters, run_row
from tests.unit.test_rows import check_shapes, returned


def test_every_prepared_statement_gets_a_plan_on_postgres() -> None:
    slow = [name for name, get in prepared_getters()
            if type(get(PostgresBackend())) is not PgPlan]
    assert slow == []


async def both(store: Store, get: Any, params: Any) -> tuple[Any, Any]:
    """The same call through the plan and through SQLAlchemy, each in a transaction that
    is rolled back."""
    plan = get(store.backend)
    assert type(plan) is PgPlan
    out = []
    for stmt in (plan, plan.stmt):
        assert store.db._engine is not None
        async with store.db._engine.connect() as aconn:
            res = await PgConn(aconn, write=True).execute(stmt, params)
            rows = [tuple(r) for r in res] if stmt is plan or res.returns_rows else []
            out.append(rows)
            await aconn.rollback()
    return out[0], out[1]


async def test_plans_give_what_sqlalchemy_gives(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row(f"r{i}") for i in range(4)]
                                  + [run_row("w", parent_waits=True, attempt=3)])
        await tx.queue.add_many([{"run_id": "r0", "due_at": 1}, {"run_id": "r1", "due_at": 5}])
    async with store.read() as tx:
        w = await tx.runs.get("w")
        many = await tx.runs.get_many(["r1", "r3", "nope"])
        assert await tx.runs.get_many([]) == {}
    assert (w.status, w.attempt, w.parent_waits, w.child_index) == ("queued", 3, True, 0)
    assert type(w.created_at) is float and sorted(many) == ["r1", "r3"]
    for get, params in [
        (runs_mod._GET, {"id": "w"}),
        (runs_mod._GET_MANY, {"ids": ["r1", "r3"]}),
        (runs_mod._GET_MANY, {"ids": []}),
        (queue_mod._FENCES, {"ids": ["r0", "r1"]}),
        (queue_mod._WAKEUP, None),
        (queue_mod._CLAIM, {"now": 2.0, "limit": 10, "owner": "me", "until": 20.0}),
    ]:
        fast, slow = await both(store, get, params)
        assert fast == slow, get
        assert [[type(v) for v in r] for r in fast] == [[type(v) for v in r] for r in slow]
    async with store.write() as tx:
        assert await tx.runs.finish("r2", "completed", "7", None, 9.0) is True
        assert await tx.runs.finish("r2", "failed", None, "{}", 10.0) is False  # <> ALL(...)
        [claimed] = await tx.queue.claim("me", 2.0, 20.0, 10)
        assert (claimed.run_id, claimed.claims) == ("r0", 1)


async def test_a_plan_runs_inside_the_write_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError, match="abort"):
        async with store.write() as tx:
            await tx.runs.insert_many([run_row("gone")])  # a plan: the first statement
            assert (await tx.runs.get("gone")) is not None  # seen inside the transaction
            raise RuntimeError("abort")
    async with store.read() as tx:
        assert await tx.runs.get("gone") is None  # rolled back with the transaction


def test_asyncpg_errors_raised_by_plans_are_retryable_like_wrapped_ones() -> None:
    class Deadlock(Exception):
        sqlstate = "40P01"

    class Wrapped(Exception):
        orig = Deadlock()

    b = PostgresBackend()
    assert b.is_retryable(Deadlock()) and b.is_retryable(Wrapped())
    assert not b.is_retryable(ValueError())


async def test_every_method_returns_the_columns_of_its_row_type(store: Store) -> None:
    """The drift check of tests/unit/test_rows.py on PostgreSQL (plans and SQLAlchemy)."""
    check_shapes(await returned(store))


def _pid(tx: Tx) -> int:
    """The server process of the transaction's connection (once a plan has run in it)."""
    conn: Any = tx.runs.conn
    return int(conn._adapted._connection.get_server_pid())


async def _terminate(store: Store, pid: int) -> None:
    """End a server process, as a database restart or a network cut would its session."""
    conn = await asyncpg.connect(store.db.url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()


async def _idle_in_transaction(store: Store) -> int:
    conn = await asyncpg.connect(store.db.url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'"))
    finally:
        await conn.close()


async def test_a_transaction_of_plans_commits_on_the_asyncpg_connection(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("p1")])
        conn: Any = tx.runs.conn
        assert not conn._conn.in_transaction()  # SQLAlchemy holds no transaction
        assert conn._adapted._transaction is not None  # the plan opened one
    async with store.read() as tx:
        assert (await tx.runs.get("p1")) is not None
    assert await _idle_in_transaction(store) == 0  # the pooled connection is back, idle
    async with store.write() as tx:  # the same connection serves the next transaction
        assert await tx.runs.finish("p1", "completed", "1", None, 6.0) is True


async def test_a_transaction_sqlalchemy_joined_commits_through_it(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("m1")])  # a plan first
        await tx.runs.conn.execute(text("INSERT INTO meta (key, value) VALUES ('k', 'v')"))
        await tx.runs.insert_many([run_row("m2")])  # and a plan after
    async with store.read() as tx:
        assert sorted(await tx.runs.get_many(["m1", "m2"])) == ["m1", "m2"]
        assert (await tx.runs.conn.execute(
            text("SELECT value FROM meta WHERE key = 'k'"))).scalar() == "v"
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.runs.conn.execute(text("INSERT INTO meta (key, value) VALUES ('j', 'v')"))
            await tx.runs.insert_many([run_row("m3")])
            raise RuntimeError("abort")
    async with store.read() as tx:
        assert await tx.runs.get("m3") is None
        assert (await tx.runs.conn.execute(
            text("SELECT count(*) FROM meta WHERE key = 'j'"))).scalar() == 0
    assert await _idle_in_transaction(store) == 0


async def test_a_failed_statement_rolls_the_direct_transaction_back(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("dup")])
    with pytest.raises(Exception, match="duplicate key"):
        async with store.write() as tx:
            await tx.runs.insert_many([run_row("before")])
            await tx.runs.insert_many([run_row("dup")])  # a unique violation
    async with store.read() as tx:
        assert await tx.runs.get("before") is None
    assert await _idle_in_transaction(store) == 0
    async with store.write() as tx:  # the connection is usable (not in an aborted one)
        await tx.runs.insert_many([run_row("after")])


async def test_a_connection_lost_before_the_commit_runs_the_transaction_again(
        store: Store) -> None:
    attempts = 0

    async def work(tx: Tx) -> None:
        nonlocal attempts
        attempts += 1
        await tx.runs.insert_many([run_row(f"a{attempts}"), run_row("once")])
        if attempts == 1:
            await _terminate(store, _pid(tx))
        await tx.queue.add_many([{"run_id": "once", "due_at": 1}])  # fails the first time

    await store.transact(work)
    assert attempts == 2
    async with store.read() as tx:
        assert sorted(await tx.runs.get_many(["a1", "a2", "once"])) == ["a2", "once"]
        assert list(await tx.queue.fences(["once"])) == ["once"]  # its queue row too
    async with store.write() as tx:  # the pool was started afresh: the next one works
        assert await tx.runs.finish("once", "completed", "1", None, 6.0) is True


async def test_a_connection_lost_at_the_commit_is_not_run_again(store: Store) -> None:
    attempts = 0

    async def work(tx: Tx) -> None:
        nonlocal attempts
        attempts += 1
        await tx.runs.insert_many([run_row("lost")])
        await _terminate(store, _pid(tx))  # the work is done: the COMMIT finds it gone

    with pytest.raises(DatabaseUnavailable):
        await store.transact(work)
    assert attempts == 1  # whether it committed is unknown to the caller: not repeated
    async with store.read() as tx:
        assert await tx.runs.get("lost") is None  # the server ended it uncommitted
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("later")])


async def test_a_list_of_one_row_runs_as_one_execute(store: Store) -> None:
    """A plan given a list of one row runs it with asyncpg's ``execute`` (half the cost of
    its ``executemany``); longer lists with ``executemany``: both write every row."""
    plan = runs_mod._INSERT(store.backend)
    async with store.write() as tx:
        one = await tx.runs.conn.execute(plan, [run_row("solo")])
        assert one.rowcount == 1
        await tx.runs.conn.execute(plan, [run_row("x1"), run_row("x2")])
    async with store.read() as tx:
        assert sorted(await tx.runs.get_many(["solo", "x1", "x2"])) == ["solo", "x1", "x2"]


@pytest.mark.parametrize("mode", ["write", "read"])
async def test_a_transaction_cancelled_mid_statement_leaves_no_busy_connection(
        pg: PgCluster, mode: str) -> None:
    """A task cancelled while a statement of its transaction waits (here for a row lock)
    must not hand the connection back to the pool with that statement still in progress:
    the next transaction would fail with "another operation is in progress"."""
    store = Store(pg.create_db(), pool_size=1)  # one connection: the next one gets it
    await store.open()
    try:
        async with store.write() as tx:
            await tx.runs.insert_many([run_row("locked")])
        holder = await asyncpg.connect(store.db.url.replace("+asyncpg", ""))
        try:
            await holder.execute("BEGIN; SELECT 1 FROM runs WHERE id = 'locked' FOR UPDATE")

            async def blocked() -> None:
                if mode == "write":
                    async with store.write() as tx:
                        await tx.runs.lock("locked")  # a plan, waiting for the lock
                else:
                    async with store.read() as tx:
                        await tx.runs.conn.execute(  # a plan too (FOR UPDATE in a read)
                            runs_mod._LOCK(store.backend), {"id": "locked"})

            task = asyncio.create_task(blocked())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await holder.close()  # the lock goes with it
        async with store.write() as tx:
            assert (await tx.runs.get("locked")) is not None
        async with store.read() as tx:
            assert (await tx.runs.get("locked")) is not None
    finally:
        await store.close()


def test_a_connection_still_consuming_an_error_counts_as_lost() -> None:
    """After the server's FATAL at a shutdown arrived between two statements, asyncpg
    refuses the next one with this error (seen in test_replicas' restart under load): the
    connection is as good as lost, so the transaction is run again later (a reducer
    batch waits for the database) instead of failing its answers."""
    err = asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 11; another operation (2) is in progress")
    assert PostgresBackend().failure(err) == "unavailable"
    assert PostgresBackend().failure(asyncpg.exceptions._base.InternalClientError(
        "something else")) is None
