"""Crash safety: kill -9 of the orchestrator, the app down for a while, a 24-hour sleep."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, start_stack


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path)
    try:
        yield s
    finally:
        s.orch.stop()
        s.app.stop()


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


async def test_24_hour_sleep_costs_a_row_and_survives_restarts(own_stack: Stack) -> None:
    s = own_stack
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
            conn.execute("UPDATE queue SET due_at = ? WHERE run_id = ?", (now, h.id))
            conn.execute("UPDATE steps SET output_json = ? WHERE run_id = ? AND kind = 'sleep'",
                         (str(now), h.id))
        assert await client.result(h.id, timeout=30) == "woke up"
        run = await client.get_run(h.id)
        assert [st["kind"] for st in run["steps"]] == ["sleep", "step"]
    finally:
        await client.aclose()
