"""Several replicas on one PostgreSQL database: each due item is claimed by one replica,
a replica killed mid-call loses its leases to the others, a cron fires once per tick."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from bench.idle_queries import measure
from orchestrator.store import Store
from orchestrator.store.notify import Channel, driver_dsn
from orchestrator.store.queue import NEVER
from tests.support.pg import PgCluster
from tests.support.replicas import Replicas, replicas


@pytest.fixture
def three(pg: PgCluster, tmp_path: Path) -> Iterator[Replicas]:
    """Three replicas with the default lease TTL (10 s): with the tests' usual 2 s, on a
    loaded 2-core machine, an answer could wait in a replica's reducer past its lease,
    and another replica call the run again (correct, but not what these tests count)."""
    with replicas(3, pg.create_db(), tmp_path, lease_ttl=None) as group:
        yield group


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _results(group: Replicas, ids: list[str], timeout: float) -> list[object]:
    """Each run's output, read through the replicas still alive in turn."""
    alive = group.alive()
    clients = [r.client() for r in alive]
    try:
        return list(await asyncio.gather(*(clients[i % len(clients)].result(rid, timeout)
                                           for i, rid in enumerate(ids))))
    finally:
        for c in clients:
            await c.aclose()


async def test_three_replicas_share_300_runs(three: Replicas) -> None:
    steps = 3
    ids: list[str] = []
    for r in three:  # 100 runs started through each replica
        async with r.rest() as rest:
            got = await rest.post("/runs/bulk", json={"function": "effects",
                                                      "inputs": [steps] * 100})
            assert got.status_code == 201, got.text
            ids += got.json()["ids"]
    assert len(set(ids)) == 300
    assert await _results(three, ids, 120) == [steps] * 300, three.logs()
    ran = three.executions()
    assert set(ran) == {(rid, f"s{i}") for rid in ids for i in range(steps)}
    assert max(ran.values()) == 1, ([k for k, v in ran.items() if v > 1], three.logs())
    calls = three.calls()
    # every run took 1 + steps calls (each step its own call, a sleep between), but for
    # a sleep whose end had passed when the app reached it (a stalled app process on a
    # loaded machine): the SDK records that one itself, with no deadline of the
    # orchestrator's, and goes on in the same call
    async with three[0].rest() as rest:
        runs = await asyncio.gather(*(rest.get(f"/runs/{rid}") for rid in ids))
    inline = sum(1 for r in runs for st in r.json()["steps"]
                 if st["kind"] == "sleep" and st["deadline_at"] is None)
    assert sum(calls) >= 300 * (1 + steps) - inline, (calls, inline)
    assert sum(1 for c in calls if c > 0) == 3, calls  # the work was spread


async def test_a_killed_replica_loses_its_leases_to_the_others(pg: PgCluster,
                                                               tmp_path: Path) -> None:
    with replicas(3, pg.create_db(), tmp_path, lease_ttl=2.0) as group:
        a = group[0]
        async with a.rest() as rest:
            got = await rest.post("/runs/bulk", json={
                "function": "slow-effects", "inputs": [{"steps": 2, "seconds": 1.0}] * 20})
            assert got.status_code == 201, got.text
            ids: list[str] = got.json()["ids"]
        # A created them already claimed: wait until its calls are in the app, then kill it
        deadline = time.monotonic() + 20
        while len(group.executions()) < 20:
            assert time.monotonic() < deadline, group.logs()
            await asyncio.sleep(0.02)
        a.kill()
        killed_at = time.time()
        started = set(group.executions())  # the (run, step) bodies begun before the kill
        t0 = time.monotonic()
        assert await _results(group, ids, 60) == [2] * 20, group.logs()
        took = time.monotonic() - t0
        ran = group.executions()
        assert set(ran) == {(rid, f"s{i}") for rid in ids for i in range(2)}
        again = {k: n for k, n in ran.items() if n > 1}
        # only calls in flight at the kill ran again, each once more at most
        assert set(again) <= started and max(ran.values()) <= 2, again
        assert len(again) <= len({rid for rid, _ in started}), again
        times = {tuple(line.split()[:2]): float(line.split()[2])
                 for line in group.effects.read_text().splitlines()}
        assert all(times[k] > killed_at for k in again)  # the re-runs came after the kill
        assert took < 2.0 + 2 * 1.2 + 10, took  # lease TTL, two slow steps, and slack
        assert sum(c for c in group.calls()) >= 20  # B and C made the calls


async def test_a_cron_fires_once_per_tick_across_replicas(three: Replicas) -> None:
    async with three[0].rest() as rest:
        made = await rest.post("/crons", json={"function": "echo", "input": "tick",
                                               "expression": "* * * * * *"})
        assert made.status_code == 201, made.text
        cron = made.json()["id"]
        began = time.time()
        await asyncio.sleep(5.5)
        assert (await rest.delete(f"/crons/{cron}")).status_code == 204
        ended = time.time()
        await asyncio.sleep(1.0)  # a fire racing the delete commits
        page = (await rest.get("/runs", params={"function": "echo", "limit": 500})).json()
        runs = [(await rest.get(f"/runs/{r['id']}")).json() for r in page["runs"]]
    keys = [r["idempotency_key"] for r in runs]
    assert all(k.startswith(f"cron:{cron}:") for k in keys), keys
    ticks = Counter(float(k.rsplit(":", 1)[1]) for k in keys)
    assert max(ticks.values()) == 1, ticks  # one run per tick, whoever fired it
    assert all(t == int(t) for t in ticks)  # on whole seconds
    expected = int(ended) - int(began)
    assert expected - 1 <= len(ticks) <= expected + 1, (sorted(ticks), began, ended)
    fired = Counter[str]()
    for r in three:
        async with httpx.AsyncClient() as h:
            text = (await h.get(f"{r.base}/metrics", headers={
                "authorization": "Bearer test-api-key"})).text
        fired[r.base] = int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                if line.startswith('durable_runs_started_total{function="echo"')))
    assert sum(fired.values()) == len(ticks), fired  # each started by one replica


@pytest.fixture(scope="module")
def pg_stats() -> Iterator[PgCluster]:
    """A cluster of this module's own that counts statements (``pg_stat_statements``)."""
    cluster = PgCluster(stat_statements=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_an_idle_replica_runs_under_a_statement_a_second(pg_stats: PgCluster,
                                                               tmp_path: Path) -> None:
    """The figure of docs/operations.md (``python -m bench.idle_queries``), over 30 s."""
    url = pg_stats.create_db()
    with replicas(1, url, tmp_path, lease_ttl=None):
        await asyncio.sleep(3.0)  # registration's writes, the first passes of the loops
        counts = await measure(url, 30.0)
    total = sum(counts.values())
    assert 0 < total < 30, counts  # the listening connection's check counts too
    assert any("pg_notify" not in q and "UPDATE queue" in q for q in counts), counts


async def test_work_a_busy_replica_cannot_take_is_claimed_at_once_by_an_idle_one(
        pg: PgCluster, tmp_path: Path) -> None:
    """A replica with no room queues a new run unclaimed and tells the others: an idle
    replica (sleeping up to 30 s between looks) claims it within a second."""
    with replicas(2, pg.create_db(), tmp_path, lease_ttl=None) as group:
        a = group.add(env={"DURABLE_MAX_INFLIGHT": "1"})
        b = group[0]
        async with a.rest() as rest:
            busy = await rest.post("/runs", json={"function": "slow-effects",
                                                  "input": {"steps": 1, "seconds": 8.0}})
            assert busy.status_code == 201, busy.text
            deadline = time.monotonic() + 10
            while not group.executions():  # A's one slot is taken by the slow call
                assert time.monotonic() < deadline, group.logs()
                await asyncio.sleep(0.02)
            await asyncio.sleep(2.0)  # B and C are asleep for long by now
            t0 = time.monotonic()
            made = await rest.post("/runs", json={"function": "echo", "input": "quick"})
            assert made.status_code == 201, made.text
        client = b.client()
        try:
            run = await client.wait(made.json()["id"], timeout=10)
        finally:
            await client.aclose()
        took = time.monotonic() - t0
        assert run["status"] == "completed" and run["output"] == "quick", run
        assert took < 1.0, took
        assert a.calls() == 0  # still in its one slow call: the others ran the echo


@pytest.fixture
def pg_restartable() -> Iterator[PgCluster]:
    """A cluster of this test's own, which it stops and starts again."""
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_a_postgres_restart_under_load_is_survived(pg_restartable: PgCluster,
                                                         tmp_path: Path) -> None:
    pg = pg_restartable
    with replicas(2, pg.create_db(), tmp_path, lease_ttl=None) as group:
        steps = 4
        ids: list[str] = []
        for r in group:
            async with r.rest() as rest:
                got = await rest.post("/runs/bulk", json={"function": "effects",
                                                          "inputs": [steps] * 60})
                assert got.status_code == 201, got.text
                ids += got.json()["ids"]
        deadline = time.monotonic() + 20
        while len(group.executions()) < 60:  # the runs are under way
            assert time.monotonic() < deadline, group.logs()
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(timeout=10) as h:
            pg.halt()
            try:
                await asyncio.sleep(1.0)
                for r in group:  # not ready while the database is gone, and why
                    ready = await h.get(f"{r.base}/readyz")
                    assert ready.status_code == 503, ready.text
                    assert ready.json()["status"] == "not ready", ready.text
                    assert "database" in ready.json()["problems"], ready.text
                await asyncio.sleep(2.0)
            finally:
                pg.resume()
            back = time.monotonic()
            for r in group:  # ready again soon after it is back
                while (ready := await h.get(f"{r.base}/readyz")).status_code != 200:
                    assert time.monotonic() - back < 5.0, ready.text
                    await asyncio.sleep(0.1)
            recovered = time.monotonic() - back
        assert await _results(group, ids, 90) == [steps] * 120, group.logs()
        ran = group.executions()
        assert set(ran) == {(rid, f"s{i}") for rid in ids for i in range(steps)}
        again = {k: n for k, n in ran.items() if n > 1}
        assert not again, (again, group.logs())
        assert recovered < 5.0


async def test_the_listening_connection_comes_back_after_it_is_cut(pg: PgCluster) -> None:
    """Its backend terminated (as a restart or a proxy would): it reconnects with backoff,
    is down meanwhile (the engine polls), and hears and sends again afterwards."""
    url = pg.create_db()
    heard: list[str] = []
    states: list[bool] = []
    got = asyncio.Event()

    def on_message(payload: str) -> None:
        heard.append(payload)
        got.set()

    ours = Channel(url, on_message, states.append, check_every=30.0)
    theirs = Channel(url, lambda _: None, lambda _: None)
    tasks = [asyncio.create_task(c.run()) for c in (ours, theirs)]
    try:
        deadline = time.monotonic() + 10
        while not (ours.up and theirs.up):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        conn = await asyncpg.connect(driver_dsn(url))
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid = $1", ours.server_pid)
        finally:
            await conn.close()
        assert killed == 1
        deadline = time.monotonic() + 5
        while states[-1:] != [True] or len(states) < 3:
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.01)
        assert states == [True, False, True]
        theirs.send("due 1.000")
        await asyncio.wait_for(got.wait(), 5)
        assert heard == ["due 1.000"]
        ours.send("due 2.000")  # its own notification is not handed back to it
        await asyncio.sleep(0.3)
        assert heard == ["due 1.000"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_sleep_recorded_by_a_replica_that_died_ends_on_time(pg: PgCluster,
                                                                   tmp_path: Path) -> None:
    """The others were told when it falls due: they do not wait for their 30 s look."""
    with replicas(3, pg.create_db(), tmp_path, lease_ttl=None) as group:
        a, b = group[0], group[1]
        client = a.client()
        try:
            rid = (await client.run_no_wait("sleeper", 4.0)).id
            deadline = time.monotonic() + 10
            while (run := await client.get_run(rid))["waiting"] is None:
                assert time.monotonic() < deadline, run
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        assert run["waiting"]["kind"] == "sleep", run
        until = _epoch(run["waiting"]["until"])
        a.kill()  # its lease is gone already: the sleep's row waits unclaimed
        client = b.client()
        try:
            run = await client.wait(rid, timeout=20)
        finally:
            await client.aclose()
        assert run["status"] == "completed" and run["output"]["slept"] >= 4.0, run
        assert _epoch(run["ended_at"]) - until < 1.5, run


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_the_idle_read_of_the_next_due_time_matches_the_full_one(
        db: str, pg: PgCluster, tmp_path: Path) -> None:
    """``queue.next_due`` (over the due_at index) against ``next_wakeup`` (every row)."""
    store = Store(pg.create_db() if db == "postgres" else f"sqlite:///{tmp_path / 'q.db'}")
    await store.open()
    try:
        async with store.read() as tx:
            assert await tx.queue.next_due(150.0) is None
        async with store.write() as tx:
            await tx.queue.add_many([{"run_id": f"r{i}", "due_at": 100.0 + i}
                                     for i in range(0, 40, 2)])
            await tx.queue.add_many([{"run_id": "parked", "due_at": NEVER}])
            await tx.queue.claim("me", 150.0, 125.0, 5)  # r0 .. r8, leased until 125
        async with store.read() as tx:
            assert await tx.queue.next_due(150.0) == await tx.queue.next_wakeup() == 110.0
        async with store.write() as tx:
            await tx.queue.claim("me", 150.0, 105.0, 20)  # all the others due, until 105
        async with store.read() as tx:
            assert await tx.queue.next_due(150.0) == await tx.queue.next_wakeup() == 105.0
        async with store.write() as tx:
            await tx.queue.remove([f"r{i}" for i in range(0, 40, 2)])
        async with store.read() as tx:
            assert await tx.queue.next_due(150.0) == await tx.queue.next_wakeup() == NEVER
    finally:
        await store.close()
