"""The lookback's query and its race, on a real store (SQLite and PostgreSQL): it reads an
index range from the window's start, never the 100,000 older events of the same name
(the plans say so; its cost: ``python -m bench.lookback``, docs/benchmarks.md), and an
event stored concurrently with a wait is seen by one side or the other on PostgreSQL
(the per-name advisory lock; without it, READ COMMITTED lets both miss)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.engine.ingest import ingest_events
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.lookback import recent_event
from orchestrator.engine.registry import Registry
from orchestrator.store import EventInsert, Store, Tx, WaitInsert
from orchestrator.store.events import recent_query
from orchestrator.store.models import events
from sdk import protocol as p
from tests.support.pg import PgCluster

NOW = 1_800_000_000.0
OLD = 100_000


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        pg: PgCluster = request.getfixturevalue("pg")
        s = Store(pg.create_db())
    else:
        s = Store(f"sqlite:///{tmp_path / 'look.db'}")
    await s.open()
    yield s
    await s.close()


def event(eid: str, ts: float, key: str = "k", name: str = "look.x") -> EventInsert:
    return {"id": eid, "name": name, "data_json": p.dumps({"key": key}).decode(), "ts": ts,
            "run_ids_json": "[]"}


async def seed_old(store: Store) -> None:
    """100,000 events of the name, days old, and as many of other names; 20,000 of
    other names inside the window; then 5 recent ones of the name (one matching)."""
    pg = store.backend.name == "postgresql"
    rows = ("SELECT i FROM generate_series(0, {n} - 1) AS g(i)" if pg else
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n} - 1) "
            "SELECT i FROM g")
    fill = ("INSERT INTO events (id, name, data_json, ts, run_ids_json) "
            "SELECT '{prefix}' || i, {name}, '{{\"key\": \"k\"}}', {ts} + i * {step}, '[]' "
            "FROM ({rows}) AS s")
    async with store.write() as tx:
        for prefix, name, n, ts, step in (
                ("old", "'look.x'", OLD, NOW - 86400 * 5, 1.0),
                ("else", "'look.else' || (i % 10)", OLD, NOW - 86400 * 5, 1.0),
                ("busy", "'look.busy' || (i % 10)", 20_000, NOW - 50, 0.002)):
            await tx.events.conn.execute(text(fill.format(
                prefix=prefix, name=name, ts=ts, step=step, rows=rows.format(n=n))))
        await tx.events.insert_new([event(f"new{i}", NOW - 10 + i, "other") for i in range(4)]
                                   + [event("new-k", NOW - 5, "k")])
    if pg:
        async with store.write() as tx:
            await tx.events.conn.execute(text("ANALYZE events"))
    async with store.read() as tx:
        assert len(await tx.events.recent("look.x", 0, OLD * 2)) == OLD + 5


def wait_op(key: str = "k", lookback: float = 60.0, name: str = "look.x") -> p.WaitEventOp:
    op = p.wait_event_op("w", 1, "w", name, {"data.key": key}, None, lookback)
    return p.parse_op(op)  # type: ignore[return-value]


class Rollback(Exception):
    pass


async def explain(store: Store, sql: str, *, without_ts_index: bool = False) -> str:
    """The plan of ``sql``: on PostgreSQL, as run (``EXPLAIN ANALYZE``: rows read), with
    ``ix_events_ts`` dropped first if asked (inside a transaction rolled back)."""
    lines: list[str] = []
    with pytest.raises(Rollback):
        async with store.write() as tx:
            conn = tx.events.conn
            if store.backend.name != "postgresql":
                rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            else:
                if without_ts_index:
                    await conn.execute(text("DROP INDEX ix_events_ts"))
                rows = await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT TEXT) {sql}"))
            lines = [str(r[-1]) for r in rows]
            raise Rollback
    return "\n".join(lines)


async def test_the_lookback_reads_a_range_of_the_index_not_the_old_events(
    store: Store
) -> None:
    await seed_old(store)
    pg = store.backend.name == "postgresql"
    sql = str(recent_query("look.x", NOW - 60, 1000).compile(
        dialect=postgresql.dialect() if pg else sqlite.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True}))
    plan = await explain(store, sql)
    if pg:
        # the planner's own choice: an index range from the window's start, backwards;
        # it may read the window through ix_events_ts (its statistics say most events bear
        # this name), never the old events: at most the window's 20,005 rows are read
        assert "Seq Scan" not in plan and "Index Scan Backward" in plan, plan
        assert "Index Cond:" in plan and "ts >=" in plan, plan
        removed = [int(x.split(":")[1]) for x in plan.splitlines() if "Rows Removed" in x]
        assert sum(removed) <= 20_000, plan
        # and the index it is meant for serves it as a range of (name, ts): 5 rows read
        plan = await explain(store, sql, without_ts_index=True)
        assert "Index Scan Backward using ix_events_name_ts" in plan, plan
        assert "Rows Removed" not in plan and "rows=5 loops=1" in plan, plan
    else:
        assert "SEARCH events USING INDEX ix_events_name_ts (name=? AND ts>?)" in plan, plan
        assert "SCAN" not in plan, plan
    async with store.read() as tx:
        found = await recent_event(tx, "r1", wait_op(), NOW)
        newest = await tx.events.recent("look.x", NOW - 60, 3)
    assert found is not None and p.loads(found)["id"] == "new-k"
    assert [r.id for r in newest] == ["new-k", "new3", "new2"]  # newest first, limited
    assert set(newest[0]._fields) == set(events.c.keys())  # an EventRow: the whole row


async def test_a_lookback_without_a_match_in_its_window_finds_nothing(store: Store) -> None:
    async with store.write() as tx:
        await tx.events.insert_new([event("e-old", NOW - 120), event("e-other", NOW - 1, "x"),
                                    event("e-name", NOW - 1, name="look.y")])
    async with store.read() as tx:
        assert await recent_event(tx, "r1", wait_op(lookback=60), NOW) is None
        found = await recent_event(tx, "r1", wait_op(lookback=121), NOW)
        assert found is not None and p.loads(found)["id"] == "e-old"
        no_lookback = wait_op()
        del no_lookback["lookback"]
        assert await recent_event(tx, "r1", no_lookback, NOW) is None


# -- the race, on PostgreSQL -----------------------------------------------------------------

def the_wait(run_id: str, key: str = "k") -> WaitInsert:
    match = {"data.key": key}
    return {"run_id": run_id, "step_id": "w", "seq": 1, "name": "w", "event": "look.x",
            "match_fields": p.match_fields(match), "match_key": p.match_key("look.x", match),
            "match_json": p.dumps(match).decode(), "expires_at": None, "created_at": NOW,
            "purpose": "wait"}


async def register_wait(tx: Tx, run_id: str, key: str = "k") -> str | None:
    """What the reducer does for a wait with a lookback: look back, else add the wait."""
    found = await recent_event(tx, run_id, wait_op(key), NOW)
    if found is None:
        await tx.waits.add([the_wait(run_id, key)])
    return found


async def send(store: Store, tx: Tx, eid: str, key: str = "k") -> None:
    await ingest_events(tx, [{"id": eid, "name": "look.x", "data": {"key": key},
                              "ts": NOW}], NOW, Effects(registry=Registry(store)))


async def delivered(store: Store, run_id: str) -> str | None:
    """The id of the event the run's wait received (lookback or ``take_matching``)."""
    async with store.read() as tx:
        memo = (await tx.steps.memo([run_id]))[run_id]
    outs = [p.loads(r.output_json)["id"] for r in memo if r.output_json]
    return outs[0] if outs else None


@pytest.fixture
async def pg_store(pg: PgCluster) -> AsyncIterator[Store]:
    s = Store(pg.create_db())
    await s.open()
    yield s
    await s.close()


async def test_an_event_stored_while_a_lookback_wait_registers_is_seen_by_one_side(
    pg_store: Store
) -> None:
    """Each side holds its transaction open while the other starts: the second waits for
    the lock until the first commits, then sees what it stored."""
    store = pg_store
    # the event first: the lookback waits for its commit, then finds it
    event_stored, release = asyncio.Event(), asyncio.Event()

    async def event_side() -> None:
        async with store.write() as tx:
            await send(store, tx, "e1")
            event_stored.set()
            await release.wait()

    async def wait_side(run_id: str) -> str | None:
        async with store.write() as tx:
            return await register_wait(tx, run_id)

    ev_task = asyncio.create_task(event_side())
    await event_stored.wait()
    wait_task = asyncio.create_task(wait_side("r1"))
    await asyncio.sleep(0.3)
    assert not wait_task.done()  # blocked on the lock, behind the event's transaction
    release.set()
    await ev_task
    found = await wait_task
    assert found is not None and p.loads(found)["id"] == "e1"

    # the wait first: the event waits for its commit, then its take_matching finds it
    wait_added, release2 = asyncio.Event(), asyncio.Event()

    async def wait_side_held(run_id: str) -> str | None:
        async with store.write() as tx:
            found = await register_wait(tx, run_id, "k2")
            wait_added.set()
            await release2.wait()
            return found

    async def event_side_free() -> None:
        async with store.write() as tx:
            await send(store, tx, "e2", "k2")

    w_task = asyncio.create_task(wait_side_held("r2"))
    await wait_added.wait()
    e_task = asyncio.create_task(event_side_free())
    await asyncio.sleep(0.3)
    assert not e_task.done()  # blocked on the lock, behind the wait's transaction
    release2.set()
    assert await w_task is None  # nothing in its window when it looked
    await e_task
    assert await delivered(store, "r2") == "e2"


async def test_without_the_lock_read_committed_lets_both_sides_miss(pg_store: Store) -> None:
    """Why the lock is there: the same two transactions, interleaved, with the statements
    of each side but no lock. Each reads before the other commits, so the event is not
    found by the lookback and the wait is not found by the event."""
    store = pg_store
    step1, step2, step3 = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: dict[str, object] = {}

    async def event_side() -> None:
        async with store.write() as tx:
            await tx.events.insert_new([event("e3", NOW)])
            step1.set()
            await step2.wait()
            seen["waits"] = await tx.waits.take_matching(
                {"id": "e3", "name": "look.x", "data": {"key": "k"}, "ts": NOW})
        step3.set()

    async def wait_side() -> None:
        await step1.wait()
        async with store.write() as tx:
            seen["events"] = await tx.events.recent("look.x", NOW - 60, 1000)
            await tx.waits.add([the_wait("r3")])
            step2.set()
            await step3.wait()

    await asyncio.gather(event_side(), wait_side())
    assert seen == {"events": [], "waits": []}
    async with store.read() as tx:  # both committed: a stored event, a wait left parked
        assert [r.id for r in await tx.events.recent("look.x", NOW - 60, 10)] == ["e3"]
        assert [w.run_id for w in await tx.waits.take_matching(
            {"id": "e3", "name": "look.x", "data": {"key": "k"}, "ts": NOW})] == ["r3"]
