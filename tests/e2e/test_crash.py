"""Crash safety: kill -9 of the orchestrator, the app down for a while, a 24-hour sleep."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, running_stack
from tests.support import procs


@pytest.fixture(params=["sqlite", "postgres"])
def own_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A stack of this test's own (it kills things), on SQLite and on PostgreSQL."""
    with running_stack(request, tmp_path, request.param) as s:
        yield s


@pytest.fixture
def sqlite_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A stack of this test's own whose SQLite file the test reads and edits."""
    with running_stack(request, tmp_path, "sqlite") as s:
        yield s


def _effects(path: Path) -> list[tuple[str, str, float]]:
    out = []
    for line in path.read_text().splitlines():
        rid, step, ts = line.split()
        out.append((rid, step, float(ts)))
    return out


async def test_kill9_orchestrator_in_the_middle_of_many_runs(own_stack: Stack) -> None:
    s = own_stack
    n_runs, n_steps = 30, 5
    client = s.client()
    ids = [(await client.run_no_wait("effects", n_steps)).id for _ in range(n_runs)]
    # let the runs get going, then kill the orchestrator while calls are in flight
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if s.effects.exists() and len(s.effects.read_text().splitlines()) >= n_runs:
            break
        await asyncio.sleep(0.02)
    s.orch.kill9()
    killed_at = time.time()
    await client.aclose()
    await asyncio.sleep(0.3)  # in-flight calls finish at the app; their answers are lost
    s.orch.start()
    client = s.client()
    try:
        for rid in ids:
            assert await client.result(rid, timeout=60) == n_steps
        async with s.rest() as rest:
            for rid in ids:
                run = (await rest.get(f"/runs/{rid}")).json()
                step_ids = [st["id"] for st in run["steps"]]
                assert len(step_ids) == len(set(step_ids)) == 2 * n_steps
                assert all(st["attempts"] == 1 for st in run["steps"] if st["kind"] == "step")
    finally:
        await client.aclose()
    effects = _effects(s.effects)
    counts = Counter((rid, step) for rid, step, _ in effects)
    expected = {(rid, f"s{i}") for rid in ids for i in range(n_steps)}
    assert set(counts) == expected  # every step's side effect ran at least once
    reruns = [k for k, c in counts.items() if c > 1]
    print(f"{len(effects)} executions, {len(reruns)} re-runs of in-flight calls")
    assert all(counts[k] == 2 for k in reruns)  # re-ran at most once ...
    first_run = {}
    for rid, step, ts in effects:
        first_run.setdefault((rid, step), ts)
    for k in reruns:  # ... and only for the call that was in flight when it was killed
        assert first_run[k] <= killed_at
    assert len({rid for rid, _ in reruns}) == len(reruns)  # one in-flight call per run


async def test_app_unreachable_for_a_while(own_stack: Stack) -> None:
    s = own_stack
    s.app.stop()
    client = s.client()
    try:
        ids = [(await client.run_no_wait("chain", 3)).id for _ in range(10)]
        await asyncio.sleep(2.0)
        async with s.rest() as rest:
            for rid in ids:
                run = (await rest.get(f"/runs/{rid}")).json()
                assert run["status"] in ("queued", "running")
                assert run["waiting"]["kind"] == "delivery_retry"
                assert "connection failed" in run["waiting"]["reason"]
        s.app.start()
        for rid in ids:
            assert await client.result(rid, timeout=30) == 3
    finally:
        await client.aclose()


async def test_24_hour_sleep_costs_a_row_and_survives_restarts(sqlite_stack: Stack) -> None:
    s = sqlite_stack
    client = s.client()
    h = await client.run_no_wait("long-sleep")
    for _ in range(200):
        run = await client.get_run(h.id)
        if run["waiting"] and run["waiting"]["kind"] == "sleep":
            break
        await asyncio.sleep(0.05)
    await client.aclose()
    db = s.tmp / "orchestrator.db"
    with sqlite3.connect(db) as conn:
        [(due,)] = conn.execute("SELECT due_at FROM queue WHERE run_id = ?", (h.id,)).fetchall()
    assert 86_000 < due - time.time() <= 86_400
    # the orchestrator and the app both restart: nothing about the sleep lives in memory
    s.orch.kill9()
    s.app.stop()
    s.app.start()
    s.orch.start()
    client = s.client()
    try:
        assert (await client.get_run(h.id))["waiting"]["kind"] == "sleep"
        with sqlite3.connect(db) as conn:  # a day passes: move the sleep's end to now
            now = time.time()
            conn.execute("UPDATE queue SET due_at = ?, rank_at = ? - (priority - 1) * 60.0 "
                         "WHERE run_id = ?", (now, now, h.id))  # the claim order too
            conn.execute("UPDATE steps SET output_json = ? WHERE run_id = ? AND kind = 'sleep'",
                         (str(now), h.id))
        assert await client.result(h.id, timeout=30) == "woke up"
        run = await client.get_run(h.id)
        assert [st["kind"] for st in run["steps"]] == ["sleep", "step"]
    finally:
        await client.aclose()


async def test_cron_every_second_fires_once_per_tick_across_a_restart(own_stack: Stack) -> None:
    s = own_stack
    client = s.client()
    cron = await client.create_cron("ticker", "* * * * * *")
    await asyncio.sleep(3.3)
    await client.aclose()
    s.orch.kill9()
    down_at = time.time()
    await asyncio.sleep(2.5)  # ticks are missed while no orchestrator runs
    launch_at = time.time()
    s.orch.start()
    up_at = time.time()
    client = s.client()
    try:
        await asyncio.sleep(3.3)
        await client.delete_cron(cron["id"])
        await asyncio.sleep(0.5)
        async with s.rest() as rest:
            page = (await rest.get("/runs", params={"function": "ticker", "limit": 100})).json()
            keys = []
            for r in page["runs"]:
                detail = (await rest.get(f"/runs/{r['id']}")).json()
                keys.append(detail["idempotency_key"])
                assert detail["status"] == "completed" or detail["status"] == "running"
    finally:
        await client.aclose()
    assert all(k.startswith(f"cron:{cron['id']}:") for k in keys)
    ticks = sorted(float(k.rsplit(":", 1)[1]) for k in keys)
    assert len(ticks) == len(set(ticks))  # once per tick
    assert all(t == int(t) for t in ticks)  # on whole seconds
    before = [t for t in ticks if t <= down_at]
    # no process ran from the kill to the launch (the new one starts some time later,
    # slower on a loaded machine: up_at is when it answered, not when it began firing)
    during = [t for t in ticks if down_at < t <= launch_at]
    catch_up = [t for t in ticks if t > down_at]
    assert len(before) >= 2 and len(catch_up) >= 3
    assert before == [before[0] + i for i in range(len(before))]  # no tick missed while up
    # the ticks missed while down fire once (the latest of them), not once per tick
    assert len(during) <= 1
    assert catch_up[1:] == [catch_up[1] + i for i in range(len(catch_up) - 1)]
    assert catch_up[0] < up_at  # the catch-up fire is a missed tick, fired on start


def test_a_second_orchestrator_on_the_same_sqlite_file_refuses_to_start(
    sqlite_stack: Stack,
) -> None:
    s = sqlite_stack
    second, _ = procs.orchestrator(s.tmp, db_url=f"sqlite:///{s.tmp / 'orchestrator.db'}")
    with pytest.raises(RuntimeError, match="exited"):
        second.start()
    assert "another orchestrator is using" in second.log()
    assert s.orch.proc is not None and s.orch.proc.poll() is None  # the first one runs on
