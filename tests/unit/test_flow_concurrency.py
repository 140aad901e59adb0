"""Concurrency limits and priority on the claim (engine/concurrency.py, store/queue.py),
on a real SQLite store: the aging order, the limited claim's slot count, the groups and
priority a new run gets, the claim's plan over the rank index."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from orchestrator.engine import concurrency
from orchestrator.engine.registry import FunctionInfo, Registry
from orchestrator.store import QueueFlow, Store
from orchestrator.store import queue as queue_mod
from sdk import Concurrency, Priority, task
from sdk.flow import PRIORITY_STEP_S
from sdk.function import Retry


def info(name: str, **flow: Any) -> FunctionInfo:
    @task(name, **flow)
    async def fn(ctx: Any, x: Any) -> Any:
        return x

    return FunctionInfo(name, "app", "http://app", "task", fn.config(), Retry())


class StubRegistry:
    """The registry's one call the limited claim makes."""

    def __init__(self, *infos: FunctionInfo) -> None:
        self.fns = {i.name: i for i in infos}

    async def get_many(self, names: set[str]) -> dict[str, FunctionInfo]:
        return {n: self.fns[n] for n in names if n in self.fns}


async def _rows(store: Store, rows: list[dict[str, Any]]) -> None:
    async with store.write() as tx:
        await tx.queue.add_many(rows)


def test_aging_order_is_due_time_minus_a_minute_per_priority_step() -> None:
    assert PRIORITY_STEP_S == queue_mod.PRIORITY_STEP_S == 60.0
    assert queue_mod.rank(1000.0, 1) == 1000.0
    assert queue_mod.rank(1000.0, 10) == 1000.0 - 9 * 60
    # a priority-10 run due 8 minutes after a priority-1 run still goes first; one due 10
    # minutes after it does not: the low run waits behind at most 9 minutes of arrivals
    assert queue_mod.rank(8 * 60.0, 10) < queue_mod.rank(0.0, 1) < queue_mod.rank(10 * 60.0, 10)


async def test_the_claim_takes_higher_priorities_first_aged(store: Store) -> None:
    now = 10_000.0
    await _rows(store, [
        {"run_id": "old-low", "due_at": now - 600, "priority": 1},   # rank now-600
        {"run_id": "low", "due_at": now - 10, "priority": 1},        # rank now-10
        {"run_id": "high", "due_at": now - 1, "priority": 10},       # rank now-541
        {"run_id": "mid", "due_at": now - 5, "priority": 5},         # rank now-245
        {"run_id": "future-high", "due_at": now + 5, "priority": 10},  # not due yet
    ])
    async with store.write() as tx:
        got = [r.run_id for r in await tx.queue.claim("me", now, now + 10, 10)]
    assert sorted(got) == ["high", "low", "mid", "old-low"]  # every due row, none later
    # the order itself: claim one at a time
    await _rows(store, [{"run_id": f"p{p}", "due_at": now - 1, "priority": p}
                        for p in (1, 3, 10, 7)])
    order = []
    for _ in range(4):
        async with store.write() as tx:
            order += [r.run_id for r in await tx.queue.claim("me", now, now + 10, 1)]
    assert order == ["p10", "p7", "p3", "p1"]


async def test_schedule_and_wake_keep_the_rank_in_step_with_the_due_time(store: Store) -> None:
    await _rows(store, [{"run_id": "r", "due_at": 100.0, "priority": 4}])
    async with store.write() as tx:
        await tx.queue.schedule("r", 500.0)
        await tx.queue.wake("r", 300.0)
        # a row made here for a replayed run gets the groups and priority it is given
        await tx.queue.schedule("new", 50.0, flow=QueueFlow(3, "f#0|", None))
    with store.db._sync_engine.connect() as conn:  # type: ignore[union-attr]
        rows = {r[0]: tuple(r[1:]) for r in conn.execute(text(
            "SELECT run_id, due_at, rank_at, priority, ckey1 FROM queue"))}
    assert rows["r"] == (300.0, 300.0 - 3 * 60, 4, None)
    assert rows["new"] == (50.0, 50.0 - 2 * 60, 3, "f#0|")


def test_a_new_run_gets_its_groups_and_priority() -> None:
    fn = info("sync", concurrency=[Concurrency(20), Concurrency(3, key="input.customer")],
              priority=Priority(2, key="input.tier"))
    qf = concurrency.queue_flow(fn, None, json.dumps({"customer": "acme", "tier": 7}), None)
    assert (qf.priority, qf.ckey1, qf.ckey2) == (7, "sync#0|", "sync#1|acme")
    qf = concurrency.queue_flow(fn, None, json.dumps({"customer": 5}), None, given=9)
    assert (qf.priority, qf.ckey2) == (9, "sync#1|5")  # the trigger's priority wins
    assert concurrency.queue_flow(fn, None, "{}", None).priority == 2  # the default
    # a child of a parent of priority 8: the function's own declaration wins...
    assert concurrency.queue_flow(fn, None, "{}", None, inherited=8).priority == 2
    # ...and without one it inherits
    plain = info("plain")
    qf = concurrency.queue_flow(plain, None, "{}", None, inherited=8)
    assert (qf.priority, qf.ckey1, qf.ckey2) == (8, None, None)
    assert concurrency.queue_flow(plain, None, "{}", None).priority == 1
    with pytest.raises(ValueError, match="priority"):
        concurrency.queue_flow(plain, None, "{}", None, given=11)


def test_a_workflow_task_counts_against_its_own_limit() -> None:
    from sdk import Workflow

    wf = Workflow("wf", concurrency=4)

    @wf.task(concurrency=[Concurrency(2, key="input.k")])
    async def one(ctx: Any, x: Any) -> Any:
        return x

    @wf.task(parents=[one])
    async def two(ctx: Any, x: Any) -> Any:
        return x

    fi = FunctionInfo("wf", "app", "http://app", "workflow", wf.config(), Retry())
    assert concurrency.limited(fi)
    own = concurrency.queue_flow(fi, "one", json.dumps({"k": "a"}), None, inherited=6)
    assert (own.priority, own.ckey1, own.ckey2) == (6, "wf/one#0|a", None)
    shared = concurrency.queue_flow(fi, "two", "{}", None, inherited=6)
    assert (shared.ckey1, shared.ckey2) == ("wf#0|", None)  # the workflow's limit
    fns = {"wf": fi}
    assert concurrency.limit_of_group(fns, "wf/one#0|a") == 2
    assert concurrency.limit_of_group(fns, "wf#0|") == 4
    assert concurrency.limit_of_group(fns, "wf#1|") is None  # no longer declared
    assert concurrency.limit_of_group(fns, "gone#0|x") is None


async def test_the_limited_claim_leases_only_what_fits(store: Store) -> None:
    fn = info("f", concurrency=[Concurrency(3), Concurrency(2, key="input.c")])
    reg = cast(Registry, StubRegistry(fn))
    now = 1000.0
    rows = []
    for i in range(12):  # customers a, b, c in turn, due in order
        c = "abc"[i % 3]
        rows.append({"run_id": f"r{i:02d}", "due_at": now - 100 + i, "priority": 1,
                     "ckey1": "f#0|", "ckey2": f"f#1|{c}"})
    # r00 is in flight (a live lease): one slot of f#0| and of f#1|a held
    await _rows(store, rows)
    async with store.write() as tx:
        await tx.queue.lease_limited("other", ["r00"], now, now + 30)
    async with store.write() as tx:
        assert await tx.queue.claim("me", now, now + 30, 50) == []  # not the plain claim's
        got = await concurrency.claim_limited(tx, reg, "me", now, now + 30, 50)
    assert [r.run_id for r in got] == ["r01", "r02"]  # 3 slots overall, one was held
    async with store.write() as tx:
        assert await concurrency.claim_limited(tx, reg, "me", now, now + 30, 50) == []
        # a call ends: its row released (due later, a sleep) frees its slots
        await tx.queue.schedule("r01", now + 50)
    async with store.write() as tx:
        got = await concurrency.claim_limited(tx, reg, "me", now, now + 30, 50)
    assert [r.run_id for r in got] == ["r03"]  # customer a: r00 held, r03 is the 2nd
    # leases expire: every slot is free again, 2 per customer and 3 overall
    later = now + 31
    async with store.write() as tx:
        got = await concurrency.claim_limited(tx, reg, "me", later, later + 30, 50)
        held = await tx.queue.slots(later)
    assert [r.run_id for r in got] == ["r00", "r02", "r03"]
    assert held == {"f#0|": 3, "f#1|a": 2, "f#1|c": 1}


async def test_a_full_group_does_not_hold_back_another(store: Store) -> None:
    fn = info("g", concurrency=[Concurrency(1, key="input.c")])
    reg = cast(Registry, StubRegistry(fn))
    now = 5000.0
    # 600 rows of customer "hot" first in line (more than a page), then one of "cold"
    rows = [{"run_id": f"h{i:04d}", "due_at": now - 1000 + i * 0.1, "priority": 1,
             "ckey1": "g#0|hot", "ckey2": None} for i in range(600)]
    rows.append({"run_id": "cold", "due_at": now - 1, "priority": 1, "ckey1": "g#0|cold",
                 "ckey2": None})
    await _rows(store, rows)
    async with store.write() as tx:
        got = await concurrency.claim_limited(tx, reg, "me", now, now + 30, 10)
    assert sorted(r.run_id for r in got) == ["cold", "h0000"]
    async with store.write() as tx:
        # blocked rows wake nobody: the next wake-up is a lease's expiry...
        assert await tx.queue.next_due(now) == now + 30
        await tx.queue.schedule("cold", now + 7)
        assert await tx.queue.next_due(now) == now + 7  # ...a grouped row due later does


async def test_the_claims_read_the_rank_index_in_order(store: Store) -> None:
    """EXPLAIN QUERY PLAN: each claim walks its partial rank index, no sort of due rows."""
    await _rows(store, [{"run_id": f"r{i}", "due_at": float(i), "priority": 1 + i % 10,
                         "ckey1": None if i % 2 else f"f#0|{i % 7}", "ckey2": None}
                        for i in range(2000)])
    with store.db._sync_engine.connect() as conn:  # type: ignore[union-attr]
        conn.execute(text("ANALYZE"))
        for stmt, index in ((queue_mod._CLAIM, "ix_queue_rank_free"),
                            (queue_mod._LIMITED, "ix_queue_rank_limited")):
            compiled = stmt(store.backend).stmt.compile(dialect=sqlite.dialect())
            values = {"now": 1000.0, "limit": 10, "owner": "me", "until": 2000.0,
                      "after": -1.0, "aid": ""}
            values = {**compiled.params, **values}
            params = tuple(values[n] for n in compiled.positiontup or ())
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), params))
            assert index in plan, plan
            assert "TEMP B-TREE" not in plan, plan


async def test_an_expired_lease_on_a_grouped_row_is_not_revived(store: Store) -> None:
    """Its slot may have gone to another run since: renewing it would exceed the limit."""
    fn = info("h", concurrency=1)
    reg = cast(Registry, StubRegistry(fn))
    now = 100.0
    await _rows(store, [{"run_id": "g", "due_at": now, "priority": 1, "ckey1": "h#0|",
                         "ckey2": None},
                        {"run_id": "u", "due_at": now, "priority": 1, "ckey1": None,
                         "ckey2": None}])
    async with store.write() as tx:
        assert [r.run_id for r in await tx.queue.claim("me", now, now + 10, 5)] == ["u"]
        assert [r.run_id for r in await concurrency.claim_limited(
            tx, reg, "me", now, now + 10, 5)] == ["g"]
    async with store.write() as tx:  # renewed in time: both
        assert await tx.queue.extend("me", ["g", "u"], now + 20, now + 5) == 2
    late = now + 25  # past both leases
    async with store.write() as tx:
        assert await tx.queue.extend("me", ["g", "u"], late + 10, late) == 1
        leases = await tx.queue.leases(["g", "u"])
    assert leases["g"] == ("me", now + 20) and leases["u"] == ("me", late + 10)
