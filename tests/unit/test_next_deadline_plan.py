"""The scheduler's read of the next run deadline goes over the deadline indexes: it runs
on every scheduler pass (every few seconds, idle or not), and a scan of ``runs`` there
cost 30 ms at 100,000 sleeping runs, on the event loop (bench/sleepers.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from orchestrator.store import Store
from orchestrator.store.db import Conn
from orchestrator.store.runs import RunsRepo


class Recording:
    """A connection that keeps the statements it runs."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.statements: list[Any] = []

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        self.statements.append(statement)
        return await self.conn.execute(statement, parameters)


async def _add(store: Store, rows: list[tuple[str, float | None, float | None]]) -> None:
    async with store.write() as tx:
        for rid, timeout_at, start_timeout_at in rows:
            await tx.runs.conn.execute(text(
                "INSERT INTO runs (id, function, status, attempt, child_index, parent_waits, "
                "pending_children, created_at, priority, timeout_at, start_timeout_at, input_json) "
                "VALUES (:id, 'f', 'running', 0, 0, 0, 0, 1.0, 1, :t, :s, 'null')"),
                {"id": rid, "t": timeout_at, "s": start_timeout_at})


async def test_the_next_deadline_is_the_earliest_of_either_kind(store: Store) -> None:
    async with store.read() as tx:
        assert await tx.runs.next_deadline() is None
    await _add(store, [("a", None, None), ("b", 50.0, None), ("c", None, 40.0),
                       ("d", 30.0, 60.0)])
    async with store.read() as tx:
        assert await tx.runs.next_deadline() == 30.0
    await _add(store, [("e", None, 20.0)])
    async with store.read() as tx:
        assert await tx.runs.next_deadline() == 20.0


async def test_the_next_deadline_reads_the_indexes_not_every_run(store: Store) -> None:
    await _add(store, [(f"r{i}", None if i % 3 else 100.0 + i, None) for i in range(30)])
    async with store.read() as tx:
        rec = Recording(tx.runs.conn)
        assert await RunsRepo(rec, store.backend).next_deadline() == 100.0
        assert rec.statements
        for stmt in rec.statements:
            sql = str(stmt.compile(dialect=sqlite.dialect(),
                                   compile_kwargs={"literal_binds": True}))
            plan = [str(r[-1]) for r in await tx.runs.conn.execute(
                text("EXPLAIN QUERY PLAN " + sql))]
            assert not any(p.startswith("SCAN runs") for p in plan), plan
            assert any("ix_runs_timeout_at" in p for p in plan), plan
            assert any("ix_runs_start_timeout_at" in p for p in plan), plan
