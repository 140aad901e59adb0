"""Concurrency limits and priority, end to end (issue 13): real orchestrators (SQLite, and
two replicas on PostgreSQL), the app of tests/apps/flow_concurrency_app.py recording each
call's interval; the overlap of calls is computed from what ran and never exceeds the
limits, under 500 concurrent triggers, across a SIGKILL of the orchestrator, with 2
replicas. Priority: higher first, and the claim's plan on PostgreSQL reads the rank index.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from orchestrator.store import Store
from orchestrator.store import queue as queue_mod
from tests.support import procs
from tests.support.pg import PgCluster
from tests.support.replicas import replicas

pytestmark = pytest.mark.timeout(180)

APP = "tests.apps.flow_concurrency_app:app"
ADMIN = {"authorization": f"Bearer {procs.API_KEY}"}


@dataclass
class Call:
    function: str
    group: str
    label: str
    start: float
    end: float


def calls(path: Path, function: str | None = None) -> list[Call]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and (function is None or parts[0] == function):
            out.append(Call(parts[0], parts[1], parts[2], float(parts[3]), float(parts[4])))
    return out


def overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once (one ending as another starts: not overlapping)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda x: (x[0], x[1]))
    top = cur = 0
    for _, d in events:
        cur += d
        top = max(top, cur)
    return top


def overlaps(cs: list[Call]) -> tuple[int, dict[str, int]]:
    """The overall overlap, and per group."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in cs:
        by[c.group].append((c.start, c.end))
    return overlap([(c.start, c.end) for c in cs]), {g: overlap(v) for g, v in by.items()}


@dataclass
class Flow:
    tmp: Path
    orch: procs.Proc
    app: procs.Proc
    base: str

    @property
    def log(self) -> Path:
        return self.tmp / "flow-calls.log"

    def rest(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"{self.base}/api/v1", headers=ADMIN, timeout=60,
                                 limits=httpx.Limits(max_connections=50))


def wait_registered(base: str, function: str = "flow-limited", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/api/v1/functions/{function}", headers=ADMIN,
                    timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the app was not registered"
        time.sleep(0.05)


@pytest.fixture
def flow(tmp_path: Path) -> Iterator[Flow]:
    app, app_url = procs.app(tmp_path, APP, extra_env={"TESTAPP_FLAGS": str(tmp_path)})
    app.start()
    orch, base = procs.orchestrator(tmp_path, app_url=app_url)
    orch.start()
    try:
        wait_registered(base)
        yield Flow(tmp_path, orch, app, base)
    finally:
        orch.stop()
        app.stop()


async def trigger(rest: httpx.AsyncClient, inputs: list[dict[str, object]],
                  function: str = "flow-limited", **extra: object) -> list[str]:
    """One POST /runs per input, all at once."""
    async def one(x: dict[str, object]) -> str:
        r = await rest.post("/runs", json={"function": function, "input": x, **extra})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    return list(await asyncio.gather(*(one(x) for x in inputs)))


async def finished(rests: list[httpx.AsyncClient], ids: list[str], timeout: float = 90
                   ) -> dict[str, str]:
    """Each run's final status (read through the clients in turn)."""
    sem = asyncio.Semaphore(40)

    async def one(i: int, rid: str) -> tuple[str, str]:
        async with sem:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    r = await rests[i % len(rests)].get(f"/runs/{rid}/wait",
                                                        params={"timeout": 20})
                except httpx.TransportError:  # an orchestrator restarting
                    await asyncio.sleep(0.2)
                    continue
                status = str(r.json()["status"])
                if status not in ("queued", "running") or time.monotonic() > deadline:
                    return rid, status

    return dict(await asyncio.gather(*(one(i, rid) for i, rid in enumerate(ids))))


def customers(n: int, work: float = 0.05) -> list[dict[str, object]]:
    return [{"customer": f"c{i % 10}", "work": work} for i in range(n)]


def assert_limits(cs: list[Call]) -> None:
    top, per = overlaps(cs)
    assert top <= 20, top
    assert max(per.values()) <= 3, per


async def test_500_concurrent_triggers_keep_both_limits(flow: Flow) -> None:
    async with flow.rest() as rest:
        ids = await trigger(rest, customers(500))
        statuses = await finished([rest], ids)
    assert set(statuses.values()) == {"completed"}, flow.orch.log()[-3000:]
    cs = calls(flow.log, "flow-limited")
    assert len({c.label for c in cs}) == 500
    assert_limits(cs)
    top, per = overlaps(cs)
    assert top >= 10  # the limits are reached, not simply never tested
    assert max(per.values()) == 3


async def test_a_sleeping_run_holds_no_slot(flow: Flow) -> None:
    async with flow.rest() as rest:
        [sleeper] = await trigger(rest, [{"label": "sleeper", "sleep": 2.0}], "flow-serial")
        deadline = time.monotonic() + 20
        while not calls(flow.log, "flow-serial"):  # its first call has worked
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        others = await trigger(rest, [{"label": f"o{i}"} for i in range(5)], "flow-serial")
        statuses = await finished([rest], [sleeper, *others])
    assert set(statuses.values()) == {"completed"}
    cs = calls(flow.log, "flow-serial")
    by = {c.label: c for c in cs}
    woke = by["sleeper:after"].start
    # the 5 other runs each had their one call while the sleeper slept: no slot held
    assert all(by[f"o{i}"].end < woke for i in range(5)), cs
    assert overlap([(c.start, c.end) for c in cs]) == 1


async def test_the_limits_hold_across_a_sigkill_of_the_orchestrator(flow: Flow) -> None:
    async with flow.rest() as rest:
        ids = await trigger(rest, customers(300, work=0.1))
    deadline = time.monotonic() + 30
    while len(calls(flow.log)) < 60:  # mid-load
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    flow.orch.kill9()
    done_before = len(calls(flow.log))
    flow.orch.start()
    async with flow.rest() as rest:
        statuses = await finished([rest], ids)
    assert set(statuses.values()) == {"completed"}, flow.orch.log()[-3000:]
    cs = calls(flow.log, "flow-limited")
    assert done_before < 300 and len({c.label for c in cs}) == 300
    assert_limits(cs)


async def test_two_replicas_on_postgres_share_the_limits(pg: PgCluster, tmp_path: Path) -> None:
    with replicas(2, pg.create_db(), tmp_path, lease_ttl=None, app=APP) as group:
        rests = [httpx.AsyncClient(base_url=f"{r.base}/api/v1", headers=ADMIN, timeout=60,
                                   limits=httpx.Limits(max_connections=25)) for r in group]
        try:
            xs = customers(500)
            got = await asyncio.gather(trigger(rests[0], xs[:250]), trigger(rests[1], xs[250:]))
            ids = got[0] + got[1]
            statuses = await finished(rests, ids, timeout=120)
        finally:
            for r in rests:
                await r.aclose()
        assert set(statuses.values()) == {"completed"}, group.logs()
        assert [c > 0 for c in group.calls()] == [True, True]  # both replicas claimed
    cs = calls(tmp_path / "flow-calls.log", "flow-limited")
    assert len({c.label for c in cs}) == 500
    assert_limits(cs)


async def test_higher_priority_runs_are_claimed_first(flow: Flow) -> None:
    async with flow.rest() as rest:
        low = await rest.post("/runs/bulk", json={"function": "flow-serial", "inputs": [
            {"label": f"low{i}", "work": 0.03} for i in range(40)]})
        assert low.status_code == 201, low.text
        high = await rest.post("/runs/bulk", json={
            "function": "flow-serial", "priority": 10,
            "inputs": [{"label": f"high{i}", "work": 0.03} for i in range(8)]})
        assert high.status_code == 201, high.text
        statuses = await finished([rest], low.json()["ids"] + high.json()["ids"])
        assert set(statuses.values()) == {"completed"}
        detail = (await rest.get(f"/runs/{high.json()['ids'][0]}")).json()
        assert detail["priority"] == 10
        assert (await rest.get(f"/runs/{low.json()['ids'][0]}")).json()["priority"] == 1
    starts = {c.label: c.start for c in calls(flow.log, "flow-serial")}
    highs = sorted(starts[f"high{i}"] for i in range(8))
    lows = [starts[f"low{i}"] for i in range(40)]
    # once the first high-priority run started, every high one started before any of the
    # low ones still waiting
    assert not [s for s in lows if highs[0] < s < highs[-1]], (highs, sorted(lows))
    assert sum(s > highs[-1] for s in lows) >= 20  # they jumped the queue


async def test_a_workflow_task_keeps_its_own_limit(flow: Flow) -> None:
    async with flow.rest() as rest:
        ids = await trigger(rest, [{"work": 0.05} for _ in range(16)], "flow-pipeline",
                            priority=4)
        statuses = await finished([rest], ids)
        assert set(statuses.values()) == {"completed"}
        run = (await rest.get(f"/runs/{ids[0]}")).json()
        task_run = (await rest.get(f"/runs/{run['children'][0]['id']}")).json()
    assert task_run["priority"] == 4  # a task run has its workflow run's priority
    cs = calls(flow.log, "flow-pipeline/work")
    assert len(cs) == 16
    assert overlap([(c.start, c.end) for c in cs]) == 2


async def test_priority_is_checked_and_declared_config_shows(flow: Flow) -> None:
    async with flow.rest() as rest:
        for bad in (0, 11, "5", True, 2.5):
            for path, body in (("/runs", {"function": "flow-ranked", "priority": bad}),
                               ("/runs/bulk", {"function": "flow-ranked", "inputs": [1],
                                               "priority": bad}),
                               ("/runs/bulk", {"runs": [{"function": "flow-ranked",
                                                         "priority": bad}]}),
                               ("/schedules", {"function": "flow-ranked", "at": time.time() + 60,
                                               "priority": bad})):
                r = await rest.post(path, json=body)
                assert r.status_code == 422, (path, bad, r.text)
                assert "priority" in r.text, r.text
        declared = (await rest.post("/runs", json={"function": "flow-ranked"})).json()["id"]
        given = (await rest.post("/runs", json={"function": "flow-ranked",
                                                "priority": 7})).json()["id"]
        await finished([rest], [declared, given])
        assert (await rest.get(f"/runs/{declared}")).json()["priority"] == 2
        assert (await rest.get(f"/runs/{given}")).json()["priority"] == 7
        s = (await rest.post("/schedules", json={"function": "flow-ranked", "priority": 9,
                                                 "at": time.time() + 0.2})).json()
        assert s["priority"] == 9
        deadline = time.monotonic() + 20
        while (s := (await rest.get(f"/schedules/{s['id']}")).json())["run_id"] is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (await rest.get(f"/runs/{s['run_id']}")).json()["priority"] == 9
        fns = {f["name"]: f for f in (await rest.get("/functions")).json()["functions"]}
    assert fns["flow-limited"]["concurrency"] == [
        {"limit": 20}, {"limit": 3, "key": "input.customer"}]
    assert fns["flow-ranked"]["priority"] == {"default": 2}
    assert fns["flow-serial"]["concurrency"] == [{"limit": 1}]
    tasks = {t["name"]: t for t in fns["flow-pipeline"]["tasks"]}
    assert tasks["work"]["concurrency"] == [{"limit": 2}]


async def test_the_sdk_refuses_a_priority_out_of_range(flow: Flow) -> None:
    from sdk import Client
    from tests.apps.flow_concurrency_app import ranked

    client = Client(orchestrator_url=flow.base, api_key=procs.API_KEY)
    try:
        bound = ranked.bind(client)
        for bad in (0, 11, True):
            with pytest.raises(ValueError, match="priority"):
                await bound.run_no_wait(1, priority=bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="priority"):
                await bound.run_many([1], priority=bad)  # type: ignore[arg-type]
        handle = await bound.run_no_wait(1, priority=6)
        assert (await client.get_run(handle.id))["priority"] == 6
        assert await bound.run(2, priority=3) == 2
    finally:
        await client.aclose()


async def test_the_claim_reads_the_rank_index_on_postgres(store: Store) -> None:
    """EXPLAIN on PostgreSQL: each claim walks its partial rank index (no sort of the
    due rows), with 20 000 rows queued."""
    async with store.write() as tx:
        for base in range(0, 20_000, 1000):
            await tx.queue.add_many([
                {"run_id": f"r{i:05d}", "due_at": float(i), "priority": 1 + i % 10,
                 "ckey1": None if i % 2 else f"f#0|{i % 7}", "ckey2": None}
                for i in range(base, base + 1000)])
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    values = {"now": 15_000.0, "limit": 100, "owner": "me", "until": 16_000.0,
              "after": -1.0, "aid": ""}
    async with store.write() as tx:
        await tx.queue.conn.execute(text("ANALYZE queue"))
        for stmt, index in ((queue_mod._CLAIM, "ix_queue_rank_free"),
                            (queue_mod._LIMITED, "ix_queue_rank_limited")):
            prepared = stmt(store.backend)
            sa_stmt = getattr(prepared, "stmt", prepared)
            compiled = sa_stmt.compile(dialect=dialect)  # pyformat: %(name)s
            params = {**compiled.params, **values}
            sql = compiled.string % {k: f"'{v}'" if isinstance(v, str) else repr(v)
                                     for k, v in params.items()}
            rows = await tx.queue.conn.execute(text("EXPLAIN " + sql))
            plan = "\n".join(str(r[0]) for r in rows)
            assert index in plan, plan
            assert "Sort" not in plan, plan
