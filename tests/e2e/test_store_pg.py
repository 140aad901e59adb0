"""The PostgreSQL fast path (``fastpath.PgPlan`` run by ``db.PgConn``) against a real
PostgreSQL: plans give what SQLAlchemy gives, and join the write transaction."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.store import Store
from orchestrator.store import queue as queue_mod
from orchestrator.store import runs as runs_mod
from orchestrator.store.db import PgConn, PostgresBackend
from orchestrator.store.fastpath import PgPlan
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
