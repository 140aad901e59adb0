"""Retention (engine/retention.py) on SQLite and PostgreSQL: one sweep deletes exactly
the ended runs past their function's age (with their steps and fired schedules), never a
queued, sleeping or waiting run, never a child of an active parent; batches are
honoured; old events go. Then end to end: a real orchestrator and app, a function kept
one second, its run gone from the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.config import Settings
from orchestrator.engine.metrics import Metrics
from orchestrator.engine.registry import Registry
from orchestrator.engine.retention import DAY_S, Retention
from orchestrator.store import RunInsert, Store
from orchestrator.store.retention import expired_query
from tests.e2e.conftest import Stack
from tests.support import procs
from tests.support.pg import PgCluster

NOW = 1_700_000_000.0
SHORT_S = 60.0
"""The retention of the function ``short``; ``long`` keeps ten days, ``plain`` none of
its own (the global age, one day)."""

FUNCTIONS: list[dict[str, Any]] = [{"name": "short", "retention": SHORT_S},
                                   {"name": "long", "retention": 10 * DAY_S},
                                   {"name": "plain"}]


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        pg: PgCluster = request.getfixturevalue("pg")
        s = Store(pg.create_db())
    else:
        s = Store(f"sqlite:///{tmp_path / 'retention.db'}")
    await s.open()
    async with s.write() as tx:
        await tx.apps.save("a1", "http://127.0.0.1:1/api", "py", FUNCTIONS, NOW)
    yield s
    await s.close()


def sweeper(store: Store, *, days: float = 1.0, batch: int = 500) -> Retention:
    settings = Settings(signing_key="k", retention_days=days, retention_batch=batch)
    return Retention(store, Registry(store), Metrics(store, 5.0), settings,
                     clock=lambda: NOW)


def run(rid: str, function: str, status: str, ended_ago: float | None, *,
        parent: str | None = None) -> RunInsert:
    return {"id": rid, "function": function, "input_json": "null", "status": status,
            "created_at": NOW - 30 * DAY_S, "parent_id": parent,
            "parent_step": "spawn" if parent else None,
            "ended_at": None if ended_ago is None else NOW - ended_ago,
            "history_json": '[{"status": "failed"}]' if ended_ago else None}


async def ids_left(store: Store, ids: list[str]) -> set[str]:
    async with store.read() as tx:
        return set(await tx.runs.get_many(ids))


def deleted_count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_one_sweep_deletes_exactly_the_ended_runs_past_their_age(store: Store) -> None:
    old = 2 * DAY_S
    gone = [run("s-completed", "short", "completed", 120),
            run("s-failed", "short", "failed", 120),
            run("s-cancelled", "short", "cancelled", SHORT_S + 1),
            run("s-timed-out", "short", "timed_out", old),
            run("s-skipped", "short", "skipped", old),
            run("p-old", "plain", "completed", old),
            run("orphan-old", "unregistered", "completed", old),  # the global age
            run("tree-root", "short", "completed", old),  # ended: its children go too
            run("tree-child", "short", "completed", old, parent="tree-root"),
            run("ended-parent", "short", "failed", old),
            run("lone-child", "long", "completed", 20 * DAY_S, parent="missing-parent")]
    kept = [run("s-recent", "short", "completed", SHORT_S - 10),
            run("l-old", "long", "completed", old),  # own age (10 days) beats the global
            run("p-recent", "plain", "completed", DAY_S - 60),
            run("orphan-recent", "unregistered", "failed", 3600),
            run("queued-old", "short", "queued", None),
            run("sleeping-old", "short", "running", None),
            run("waiting-old", "short", "running", None),
            run("active-parent", "plain", "running", None),
            run("gathered-child", "short", "completed", old, parent="active-parent"),
            run("running-child", "short", "running", None, parent="ended-parent")]
    rows = gone + kept
    async with store.write() as tx:
        await tx.runs.insert_many(rows)
        await tx.steps.record([{"run_id": r["id"], "step_id": f"{r['id']}:s", "seq": 1,
                                "name": "s", "kind": "step", "output_json": "1"}
                               for r in rows])
        await tx.queue.add_many([{"run_id": "queued-old", "due_at": NOW - 30 * DAY_S},
                                 {"run_id": "sleeping-old", "due_at": NOW + DAY_S},
                                 {"run_id": "waiting-old", "due_at": 1e12},
                                 {"run_id": "active-parent", "due_at": 1e12},
                                 {"run_id": "running-child", "due_at": NOW}])
        await tx.waits.add([{"run_id": "waiting-old", "step_id": "w", "seq": 2, "name": "w",
                             "event": "go", "match_key": "k", "match_json": "{}"}])
        for sid, rid in (("fired-gone", "s-completed"), ("fired-kept", "l-old"),
                         ("pending", None)):
            await tx.schedules.add({"id": sid, "function": "short", "input_json": "null",
                                    "at": NOW - 30 * DAY_S, "run_id": rid})
        await tx.events.insert_new([
            {"id": "ev-old", "name": "e", "data_json": "{}", "ts": NOW - DAY_S - 1,
             "run_ids_json": '["p-old"]'},
            {"id": "ev-old-of-a-kept-run", "name": "e", "data_json": "{}",
             "ts": NOW - old, "run_ids_json": '["waiting-old"]'},
            {"id": "ev-new", "name": "e", "data_json": "{}", "ts": NOW - 60,
             "run_ids_json": '["p-recent"]'}])
    ret = sweeper(store)
    swept = await ret.sweep()
    all_ids = [r["id"] for r in rows]
    assert await ids_left(store, all_ids) == {r["id"] for r in kept}
    assert (swept.runs, swept.run_batches, swept.events) == (len(gone), 1, 2)
    async with store.read() as tx:
        memo = await tx.steps.memo(all_ids)
        assert {rid for rid, steps in memo.items() if steps} == {r["id"] for r in kept}
        assert set(await tx.queue.leases([r["id"] for r in kept])) == {
            "queued-old", "sleeping-old", "waiting-old", "active-parent", "running-child"}
        events = await tx.events.page(None, 10, None)
        assert [await tx.schedules.get(sid) is not None
                for sid in ("fired-gone", "fired-kept", "pending")] == [False, True, True]
    assert [e.id for e in events] == ["ev-new"]
    r = ret.metrics.registry
    assert deleted_count(r, "durable_runs_deleted_total", function="short") == 8
    assert deleted_count(r, "durable_runs_deleted_total", function="unregistered") == 1
    assert deleted_count(r, "durable_events_deleted_total") == 2
    again = await ret.sweep()
    assert (again.runs, again.events) == (0, 0)
    assert await ids_left(store, all_ids) == {r["id"] for r in kept}


async def test_a_waiting_run_keeps_its_wait(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run("w", "short", "running", None)])
        await tx.waits.add([{"run_id": "w", "step_id": "w1", "seq": 1, "name": "w",
                             "event": "go", "match_key": "k", "match_json": "{}",
                             "created_at": NOW - 30 * DAY_S, "expires_at": NOW + DAY_S}])
    await sweeper(store, days=0.001).sweep()
    async with store.write() as tx:
        taken = await tx.waits.take_expired(["w"], 1e13)
    assert [(t.run_id, t.step_id) for t in taken] == [("w", "w1")]


async def test_batches_of_500_delete_1200_runs_in_3_transactions(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run(f"r{i:04}", "plain" if i % 2 else "short",
                                       "completed", 2 * DAY_S) for i in range(1200)])
        await tx.runs.insert_many([run("live", "short", "running", None)])
    swept = await sweeper(store, batch=500).sweep()
    assert (swept.runs, swept.run_batches) == (1200, 3)
    async with store.read() as tx:
        assert await tx.runs.counts(None, None, None) == {"running": 1}


async def test_two_sweeps_at_once_delete_each_run_once(store: Store) -> None:
    """Replicas sweep together: on PostgreSQL each skips the runs the other has locked."""
    async with store.write() as tx:
        await tx.runs.insert_many([run(f"r{i:04}", "short", "completed", 2 * DAY_S)
                                   for i in range(1200)])
    a, b = await asyncio.gather(sweeper(store, batch=100).sweep(),
                                sweeper(store, batch=100).sweep())
    assert a.runs + b.runs == 1200
    async with store.read() as tx:
        assert await tx.runs.counts(None, None, None) == {}


async def test_global_forever_keeps_what_has_no_age_of_its_own(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run("p", "plain", "completed", 100 * DAY_S),
                                   run("o", "unregistered", "completed", 100 * DAY_S),
                                   run("s", "short", "completed", 100 * DAY_S)])
        await tx.events.insert_new([{"id": "ev", "name": "e", "data_json": "{}",
                                     "ts": NOW - 100 * DAY_S, "run_ids_json": "[]"}])
    swept = await sweeper(store, days=0).sweep()
    assert (swept.runs, swept.events, swept.event_batches) == (1, 0, 0)
    assert await ids_left(store, ["p", "o", "s"]) == {"p", "o"}


async def test_the_sweep_query_uses_the_index(store: Store) -> None:
    """The sweep's query (as ``expired`` sends it) is a range of ``ix_runs_function_ended``,
    not a scan of the runs."""
    dialect = postgresql.dialect() if store.backend.name == "postgresql" else sqlite.dialect()
    sql = str(expired_query(["a", "b"], 5.0, 500).compile(
        dialect=dialect, compile_kwargs={"literal_binds": True}))
    async with store.read() as tx:
        conn = tx.retention.conn
        if store.backend.name == "postgresql":
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            rows = await conn.execute(text(f"EXPLAIN {sql}"))
        else:
            rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
        plan = " ".join(str(r[-1]) for r in rows)
    assert "ix_runs_function_ended" in plan, plan


# -- end to end ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def retention_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Stack]:
    """The orchestrator sweeping every 0.2 s, with the retention app."""
    tmp = tmp_path_factory.mktemp("ret")
    db_url = request.getfixturevalue("pg").create_db() if request.param == "postgres" else None
    orch, base = procs.orchestrator(tmp, db_url=db_url,
                                    extra_env={"DURABLE_RETENTION_INTERVAL": "0.2"})
    app, app_url = procs.app(tmp, "tests.apps.retention_app:app")
    app.start()
    orch.start()
    stack = Stack(tmp, orch, app, base, app_url, tmp / "effects.log")
    try:
        r = httpx.post(f"{base}/api/v1/apps", json={"url": app_url},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        yield stack
    finally:
        orch.stop()
        app.stop()


async def test_a_run_kept_one_second_is_deleted_by_the_sweep(retention_stack: Stack) -> None:
    async with retention_stack.rest() as rest:
        fns = {f["name"]: f for f in (await rest.get("/functions")).json()["functions"]}
        assert fns["ret-brief"]["retention"] == 1.0
        assert "retention" not in fns["ret-kept"]
        brief, kept, waiting = [
            (await rest.post("/runs", json={"function": f, "input": x})).json()["id"]
            for f, x in (("ret-brief", 3), ("ret-kept", 4), ("ret-waits", None))]
        for rid in (brief, kept):
            done = (await rest.get(f"/runs/{rid}/wait", params={"timeout": 20})).json()
            assert done["status"] == "completed", done
        assert done["output"] == 8
        deadline = time.monotonic() + 20
        while (await rest.get(f"/runs/{brief}")).status_code != 404:
            assert time.monotonic() < deadline, "the sweep did not delete the run"
            await asyncio.sleep(0.2)
        r = await rest.get(f"/runs/{brief}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        await asyncio.sleep(1.5)  # the waiting run is older than its retention now
        assert (await rest.get(f"/runs/{kept}")).json()["status"] == "completed"
        assert (await rest.get(f"/runs/{waiting}")).json()["status"] == "running"
        metrics = (await rest.get(f"{retention_stack.base}/metrics")).text
        assert 'durable_runs_deleted_total{function="ret-brief"} 1.0' in metrics
