"""A database that fails a share of its statements (the test hook DURABLE_TEST_FAULT_RATE:
a connection error raised before the statement runs, chosen by a seeded generator):
every run still completes, once, and no step is recorded twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import procs
from tests.support.pg import PgCluster

RATE = 0.05


@pytest.fixture(params=["sqlite", "postgres"])
def faulty(request: pytest.FixtureRequest, tmp_path: Path
           ) -> Iterator[tuple[str, str, procs.Proc]]:
    db_url = None
    if request.param == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg")
        db_url = cluster.create_db()
    app, app_url = procs.app(tmp_path)
    app.start()
    orch, base = procs.orchestrator(tmp_path, app_url=None, db_url=db_url, extra_env={
        "DURABLE_TEST_FAULT_RATE": str(RATE), "DURABLE_TEST_FAULT_SEED": "8"})
    orch.start()
    try:
        yield base, app_url, orch
    finally:
        orch.stop()
        app.stop()


async def _retrying(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """A request, sent again while it answers 503 (the database 'unavailable')."""
    for _ in range(50):
        r = await call()
        if r.status_code != 503:
            return r
        assert r.headers.get("retry-after"), r.headers
        await asyncio.sleep(0.05)
    raise AssertionError(f"still 503: {r.text}")


async def test_runs_complete_once_despite_failing_statements(
        faulty: tuple[str, str, procs.Proc]) -> None:
    base, app_url, orch = faulty
    n_runs, n_steps = 12, 4
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, headers={
            "authorization": f"Bearer {procs.API_KEY}"}) as rest:
        r = await _retrying(lambda: rest.post("/apps", json={"url": app_url}))
        assert r.status_code == 200, r.text
        ids = []
        for i in range(n_runs):
            r = await _retrying(lambda i=i: rest.post("/runs", json={  # type: ignore[misc]
                "function": "effects", "input": n_steps, "idempotency_key": f"k{i}"}))
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert len(set(ids)) == n_runs
        deadline = time.monotonic() + 90
        runs = {}
        while len(runs) < n_runs:
            assert time.monotonic() < deadline, f"{len(runs)} of {n_runs} ended"
            for rid in ids:
                if rid in runs:
                    continue
                r = await _retrying(lambda rid=rid: rest.get(f"/runs/{rid}"))  # type: ignore[misc]
                assert r.status_code == 200, r.text
                if r.json()["status"] not in ("queued", "running"):
                    runs[rid] = r.json()
            await asyncio.sleep(0.3)
        for run in runs.values():
            assert run["status"] == "completed", run
            assert run["output"] == n_steps, run
            step_ids = [s["id"] for s in run["steps"]]
            assert len(step_ids) == len(set(step_ids)), step_ids
            assert len([s for s in step_ids if s.startswith("s")]) == n_steps, step_ids
        # one run per idempotency key, still
        r = await _retrying(lambda: rest.get("/runs", params={"function": "effects",
                                                               "limit": 500}))
        assert len(r.json()["runs"]) == n_runs
    injected = orch.log().count("injected fault")
    assert injected >= 10, f"only {injected} faults were injected"
    print(f"{injected} log lines of injected faults")
