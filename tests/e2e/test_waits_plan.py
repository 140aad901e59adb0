"""An event among many runs waiting for its name, keyed by customer (issue 14, §3), on a
real store (SQLite and PostgreSQL): ``take_matching`` reads the name's few distinct field
sets over ``ix_waits_event_fields`` (a loose index scan: one entry per field set), never
every wait of the name (the plans say so; its cost: ``python -m bench.waits``,
docs/benchmarks.md), and takes exactly the waits the event satisfies, whatever their
field sets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store import Store, WaitInsert
from orchestrator.store.waits import field_sets_query
from sdk import protocol as p
from tests.support.pg import PgCluster

MANY = 50_000


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        pg: PgCluster = request.getfixturevalue("pg")
        s = Store(pg.create_db())
    else:
        s = Store(f"sqlite:///{tmp_path / 'waits.db'}")
    await s.open()
    yield s
    await s.close()


def wait(run_id: str, match: dict[str, Any], event: str = "ping",
         purpose: str = "wait") -> WaitInsert:
    return {"run_id": run_id, "step_id": "w", "purpose": purpose, "seq": 1, "name": "w",
            "event": event, "match_fields": p.match_fields(match),
            "match_key": p.match_key(event, match), "match_json": p.dumps(match).decode(),
            "expires_at": None, "created_at": 1.0}


async def seed_many(store: Store) -> None:
    """``MANY`` waits for ``ping`` keyed by customer, as many of other names, and a few
    for ``ping`` on other field sets (none, an order, a customer and a region)."""
    pg = store.backend.name == "postgresql"
    rows = ("SELECT i FROM generate_series(0, {n} - 1) AS g(i)" if pg else
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n} - 1) "
            "SELECT i FROM g")
    fill = ("INSERT INTO waits (run_id, step_id, purpose, seq, name, event, match_fields, "
            "match_key, match_json, expires_at, created_at) "
            "SELECT '{prefix}' || i, 'w', 'wait', 1, 'w', {name}, 'data.customer', "
            "'k' || i, '{{}}', NULL, 1.0 FROM ({rows}) AS s")
    async with store.write() as tx:
        for prefix, name in (("c", "'ping'"), ("o", "'other' || (i % 10)")):
            await tx.waits.conn.execute(text(fill.format(
                prefix=prefix, name=name, rows=rows.format(n=MANY))))
        await tx.waits.add([wait("any", {}), wait("order", {"data.order": 7}),
                            wait("region", {"data.customer": "c1", "data.region": "eu"})])
    async with store.write() as tx:
        await tx.waits.conn.execute(text("ANALYZE waits"))


async def explain(store: Store, sql: str) -> str:
    """The plan of ``sql``: on PostgreSQL, as run (``EXPLAIN ANALYZE``: rows read)."""
    pg = store.backend.name == "postgresql"
    async with store.read() as tx:
        rows = await tx.waits.conn.execute(text(
            ("EXPLAIN (ANALYZE, FORMAT TEXT) " if pg else "EXPLAIN QUERY PLAN ") + sql))
        return "\n".join(str(r[-1]) for r in rows)


async def test_an_event_reads_its_names_field_sets_not_every_wait_of_the_name(
        store: Store) -> None:
    await seed_many(store)
    pg = store.backend.name == "postgresql"
    sql = str(field_sets_query("ping").compile(
        dialect=postgresql.dialect() if pg else sqlite.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True}))
    plan = await explain(store, sql)
    assert "ix_waits_event_fields" in plan, plan
    if pg:
        assert "Seq Scan" not in plan, plan
        # each seek reads one entry: one per field set (4), and one more finding none
        # (PostgreSQL shows rows per loop, rounded: at most 5 in all, of 50,003 waits)
        scans = re.findall(r"Index Only Scan using ix_waits_event_fields .*"
                           r"rows=(\d+) loops=(\d+)", plan)
        assert scans, plan
        assert sum(int(r) * int(n) for r, n in scans) <= 5, plan
        assert all(int(n) <= 5 for _, n in scans), plan
    else:
        # seeks into the index past the previous field set; no scan, no DISTINCT B-tree
        assert "(event=? AND match_fields>?)" in plan, plan
        # (the table is aliased w; "SCAN f" is the CTE's own rows, one per field set)
        assert not re.search(r"SCAN (waits|w)\b", plan) and "TEMP B-TREE" not in plan, plan
    async with store.read() as tx:
        found = [r[0] for r in await tx.waits.conn.execute(field_sets_query("ping"))]
    assert found == ["", "data.customer", "data.customer,data.region", "data.order"]


async def test_an_event_takes_the_waits_it_satisfies_whatever_their_field_sets(
        store: Store) -> None:
    async with store.write() as tx:
        await tx.waits.add([
            wait("any", {}), wait("c1", {"data.customer": "c1"}),
            wait("c2", {"data.customer": "c2"}),
            wait("c1-eu", {"data.customer": "c1", "data.region": "eu"}),
            wait("c1-us", {"data.customer": "c1", "data.region": "us"}),
            wait("cancel-c1", {"data.customer": "c1"}, purpose="cancel"),
            wait("other-name", {"data.customer": "c1"}, event="pong"),
        ])
    async with store.write() as tx:
        taken = await tx.waits.take_matching(
            {"name": "ping", "data": {"customer": "c1", "region": "eu"}})
    assert sorted(w.run_id for w in taken) == ["any", "c1", "c1-eu", "cancel-c1"]
    async with store.write() as tx:  # taken once: a second event finds only what is left
        again = await tx.waits.take_matching(
            {"name": "ping", "data": {"customer": "c1", "region": "us"}})
        none = await tx.waits.take_matching({"name": "nothing", "data": {}})
    assert [w.run_id for w in again] == ["c1-us"] and none == []


async def test_a_field_set_another_replica_has_just_added_is_matched(pg: PgCluster) -> None:
    """Two orchestrators on one PostgreSQL database: what one's event matches on is read
    from the database each time (nothing cached), so a wait the other has just committed,
    on a field set no wait had before, is taken by the next event."""
    url = pg.create_db()
    a, b = Store(url), Store(url)
    await a.open()
    await b.open()
    try:
        async with a.write() as tx:
            await tx.waits.add([wait("c1", {"data.customer": "c1"})])
        async with b.write() as tx:
            assert [w.run_id for w in await tx.waits.take_matching(
                {"name": "ping", "data": {"customer": "c1", "order": 7}})] == ["c1"]
        async with a.write() as tx:  # a new field set, on the other replica
            await tx.waits.add([wait("o7", {"data.order": 7}), wait("any", {})])
        async with b.write() as tx:
            taken = await tx.waits.take_matching(
                {"name": "ping", "data": {"customer": "c1", "order": 7}})
        assert sorted(w.run_id for w in taken) == ["any", "o7"]
    finally:
        await a.close()
        await b.close()
