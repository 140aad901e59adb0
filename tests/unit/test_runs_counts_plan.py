"""GET /runs/counts of a function over a time range reads the range, over an index."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from orchestrator.store import Store
from orchestrator.store.runs import counts_query


async def test_a_functions_counts_in_a_time_range_use_the_function_created_index(
        store: Store) -> None:
    q = counts_query("f", 1.0e9, 2.0e9)
    sql = str(q.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    async with store.read() as tx:
        plan = " ".join(str(r[-1]) for r in await tx.runs.conn.execute(
            text("EXPLAIN QUERY PLAN " + sql)))
    assert "ix_runs_function_created" in plan, plan
    assert "created_at>" in plan.replace(" ", ""), plan  # a range on the index, not a scan
