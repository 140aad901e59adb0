"""The runs list's filters (creation time, the runs an event started) and its counts per
status: ``RunsRepo.page`` and ``RunsRepo.counts`` on SQLite and PostgreSQL, then
``GET /runs`` and ``GET /runs/counts`` against a live orchestrator on each database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.store import Store
from sdk import protocol as p
from tests.support.pg import PgCluster

# -- the store, on both databases ------------------------------------------------------------

#: (id, function, status, created_at): ids sort as creation times do (as ``ids.new_id``'s).
ROWS = [
    ("r01", "f", "completed", 100.0),
    ("r02", "f", "failed", 110.0),
    ("r03", "g", "completed", 120.0),
    ("r04", "f", "completed", 130.0),
    ("r05", "f", "queued", 140.0),
    ("r06", "g", "failed", 150.0),
]


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store holding ``ROWS``, on a SQLite file, then on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        pg: PgCluster = request.getfixturevalue("pg")
        url = pg.create_db()
    s = Store(url)
    await s.open()
    async with s.write() as tx:
        await tx.runs.insert_many([
            {"id": rid, "function": fn, "status": st, "input_json": "1", "created_at": at}
            for rid, fn, st, at in ROWS])
    yield s
    await s.close()


async def _ids(store: Store, function: str | None = None, status: str | None = None,
               limit: int = 100, cursor: str | None = None, **kw: Any) -> list[str]:
    async with store.read() as tx:
        return [r.id for r in await tx.runs.page(function, status, limit, cursor, **kw)]


async def test_page_filters_on_creation_time_since_inclusive_until_exclusive(
        db: Store) -> None:
    assert await _ids(db) == ["r06", "r05", "r04", "r03", "r02", "r01"]
    assert await _ids(db, since=110.0, until=140.0) == ["r04", "r03", "r02"]
    assert await _ids(db, since=140.0) == ["r06", "r05"]
    assert await _ids(db, until=110.0) == ["r01"]
    assert await _ids(db, since=141.0, until=149.0) == []
    assert await _ids(db, "f", "completed", since=100.0, until=131.0) == ["r04", "r01"]


async def test_page_with_a_time_range_keeps_the_id_cursor(db: Store) -> None:
    first = await _ids(db, limit=2, since=105.0, until=150.0)
    assert first == ["r05", "r04"]
    second = await _ids(db, limit=2, cursor=first[-1], since=105.0, until=150.0)
    assert second == ["r03", "r02"]
    assert await _ids(db, limit=2, cursor=second[-1], since=105.0, until=150.0) == []


async def test_page_of_given_ids(db: Store) -> None:
    assert await _ids(db, ids=["r02", "r06", "r03", "nope"]) == ["r06", "r03", "r02"]
    assert await _ids(db, ids=[]) == []  # an event that started no run
    assert await _ids(db, "g", ids=["r02", "r06", "r03"]) == ["r06", "r03"]
    assert await _ids(db, ids=["r02", "r06", "r03"], since=115.0, limit=1) == ["r06"]
    assert await _ids(db, ids=["r02", "r06", "r03"], cursor="r06") == ["r03", "r02"]


async def test_counts_group_by_status(db: Store) -> None:
    async with db.read() as tx:
        assert await tx.runs.counts(None, None, None) == {
            "completed": 3, "failed": 2, "queued": 1}
        assert await tx.runs.counts("f", None, None) == {
            "completed": 2, "failed": 1, "queued": 1}
        assert await tx.runs.counts(None, 110.0, 150.0) == {
            "completed": 2, "failed": 1, "queued": 1}
        assert await tx.runs.counts("g", 150.0, None) == {"failed": 1}
        assert await tx.runs.counts("nope", None, None) == {}
        got = await tx.runs.counts(None, None, None)
    assert all(type(v) is int for v in got.values())


# -- REST, against a live orchestrator on each database ---------------------------------------

def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _wait_all(rest: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for rid in ids:
        r = await rest.get(f"/runs/{rid}/wait", params={"timeout": 20})
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


async def _list(rest: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await rest.get("/runs", params=params)
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()["runs"]]


async def test_list_runs_by_creation_time(rest: httpx.AsyncClient) -> None:
    before = await _list(rest, function="chain")
    t0 = time.time()
    ids = [(await rest.post("/runs", json={"function": "chain", "input": i})).json()["id"]
           for i in range(3)]
    await asyncio.sleep(0.05)
    t1 = time.time()
    later = (await rest.post("/runs", json={"function": "chain", "input": 9})).json()["id"]
    await _wait_all(rest, [*ids, later])
    newest_first = ids[::-1]
    assert await _list(rest, function="chain", since=t0, until=t1) == newest_first
    assert await _list(rest, since=iso(t0), until=iso(t1)) == newest_first  # ISO-8601
    assert await _list(rest, since=iso(t0).replace("+00:00", "Z"),
                       until=t1) == newest_first
    assert await _list(rest, function="chain", since=t1) == [later]
    assert await _list(rest, function="chain", until=t0) == before
    # pages of a time range hold only its runs
    r = await rest.get("/runs", params={"since": t0, "until": t1, "limit": 2})
    page = r.json()
    assert [x["id"] for x in page["runs"]] == newest_first[:2] and page["next_cursor"]
    assert await _list(rest, since=t0, until=t1, limit=2,
                       cursor=page["next_cursor"]) == newest_first[2:]


async def test_list_runs_an_event_started(rest: httpx.AsyncClient) -> None:
    eid = f"ev-{uuid.uuid4().hex}"
    r = await rest.post("/events", json={"id": eid, "name": "test.trigger",
                                         "data": {"n": 1}})
    assert r.status_code == 202, r.text
    [started] = r.json()["runs"]
    assert started
    await _wait_all(rest, started)
    assert await _list(rest, event_id=eid) == sorted(started, reverse=True)
    assert await _list(rest, event_id=eid, status="failed") == []
    assert await _list(rest, event_id=eid, until=0) == []
    # an event that started nothing lists nothing; an unknown one is 404 naming it
    quiet = f"ev-{uuid.uuid4().hex}"
    assert (await rest.post("/events", json={"id": quiet, "name": "no.one.listens"})
            ).status_code == 202
    assert await _list(rest, event_id=quiet) == []
    r = await rest.get("/runs", params={"event_id": "no-such-event"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "event_id", r.text


async def test_counts_per_status(rest: httpx.AsyncClient) -> None:
    t0 = time.time()
    ok = [(await rest.post("/runs", json={"function": "echo", "input": i})).json()["id"]
          for i in range(2)]
    bad = (await rest.post("/runs", json={"function": "always-fails"})).json()["id"]
    runs = await _wait_all(rest, [*ok, bad])
    assert [r["status"] for r in runs] == ["completed", "completed", "failed"]
    t1 = time.time()
    r = await rest.get("/runs/counts", params={"since": t0, "until": t1})
    assert r.status_code == 200, r.text
    counts = r.json()
    assert set(counts) == {s.value for s in p.RunStatus} | {"total"}
    assert counts == {**{s.value: 0 for s in p.RunStatus}, "completed": 2, "failed": 1,
                      "total": 3}
    r = await rest.get("/runs/counts", params={"function": "echo", "since": iso(t0),
                                               "until": iso(t1)})
    assert r.json()["completed"] == 2 and r.json()["total"] == 2
    everything = (await rest.get("/runs/counts")).json()
    assert everything["total"] == sum(v for k, v in everything.items() if k != "total")
    assert everything["total"] >= 3
    # the total of a time range is what the list shows for it
    assert len(await _list(rest, since=t0, until=t1)) == counts["total"]
