"""A run's memo tail (``StepsRepo.memo`` with ``since``: the app keeps the head) is read
over ``ix_steps_run_seq``: the rows from its start on, in order, without reading the
head's rows or sorting (a loop's 1,000th iteration read 2,000 rows per call for two)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from orchestrator.store import Store
from orchestrator.store.steps import _MEMO, _MEMO_TAILS


def _sql(prepared: object) -> str:
    """The SQL of a prepared statement, its parameters inlined (one run id, from 45)."""
    stmt = getattr(prepared, "stmt", prepared).params(ids=["r"], since=45)  # type: ignore[attr-defined]
    return str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


async def test_the_memo_and_its_tail_are_read_over_the_run_seq_index(store: Store) -> None:
    async with store.write() as tx:
        await tx.steps.record([
            {"run_id": "r", "step_id": f"s:{i}", "seq": i, "name": "s", "kind": "step",
             "status": "completed", "attempts": 1, "output_json": str(i), "error_json": None,
             "started_at": 1.0, "ended_at": 2.0, "deadline_at": None}
            for i in range(50)])
    async with store.read() as tx:
        tail = (await tx.steps.memo(["r"], {"r": 45}))["r"]
        whole = (await tx.steps.memo(["r"]))["r"]
        plans = {}
        for name, prepared in (("tail", _MEMO_TAILS), ("whole", _MEMO)):
            sql = _sql(prepared(store.backend))
            rows = await tx.steps.conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            plans[name] = " / ".join(str(r[-1]) for r in rows)
    assert [r.seq for r in tail] == [45, 46, 47, 48, 49]
    assert [r.seq for r in whole] == list(range(50))
    assert "ix_steps_run_seq (run_id=? AND seq>?)" in plans["tail"], plans
    for plan in plans.values():
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plans
