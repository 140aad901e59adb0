"""Flow controls that delay a run's start, declared on a workflow: the workflow run is
queued (a queue row, like a task's run) and its first tasks start when it is claimed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from sdk import Client
from tests.support import procs
from tests.support.pg import PgCluster


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("flow-wf")
    db_url = None
    if request.param == "postgres":
        pg: PgCluster = request.getfixturevalue("pg")
        db_url = pg.create_db()
    app, app_url = procs.app(tmp, "tests.apps.flow_workflow_app:app")
    app.start()
    orch, url = procs.orchestrator(tmp, app_url=app_url, db_url=db_url)
    orch.start()
    try:
        r = httpx.post(f"{url}/api/v1/apps", json={"url": app_url},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        yield url
    finally:
        orch.stop()
        app.stop()


@pytest.fixture
async def client(base: str) -> AsyncIterator[Client]:
    c = Client(orchestrator_url=base, api_key=procs.API_KEY)
    yield c
    await c.aclose()


async def test_a_debounced_workflow_runs_once_per_burst_with_the_last_input(
        client: Client) -> None:
    handles = []
    for i in range(5):
        handles.append(await client.run_no_wait("wf-debounced", {"k": "a", "i": i}))
        await asyncio.sleep(0.1)
    assert len({h.id for h in handles}) == 1  # every trigger of the burst: one run
    t_last = time.time()
    out = await handles[0].result(timeout=30)
    assert out["first"]["input"] == {"k": "a", "i": 4}  # the last trigger's input
    assert out["second"] == {"k": "a", "i": 4}
    assert out["first"]["t"] >= t_last + 0.8  # started after the quiet period
    run = await handles[0].get()
    assert run["status"] == "completed"


async def test_a_throttled_workflow_starts_its_runs_spaced(client: Client) -> None:
    handles = [await client.run_no_wait("wf-throttled", i) for i in range(6)]
    outs = [await h.result(timeout=30) for h in handles]
    # the workflow runs' starts (when their queue rows were claimed), Throttle(2,
    # period=1) with burst 1: one start every 0.5 s
    runs = [await h.get() for h in handles]
    starts = sorted(datetime.fromisoformat(r["started_at"]).timestamp()
                    if isinstance(r["started_at"], str) else float(r["started_at"])
                    for r in runs)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.5 - 0.01, gaps
    assert sorted(o["only"]["input"] for o in outs) == list(range(6))


async def test_a_batched_workflow_gets_the_batch_as_its_input(client: Client) -> None:
    sent = await client.send_events([{"name": "wf.item", "data": {"n": n}} for n in range(3)])
    ids = {rid for rs in sent["runs"] for rid in rs}
    async with httpx.AsyncClient(base_url=str(client.orchestrator_url) + "/api/v1",
                                 headers={"authorization": f"Bearer {procs.API_KEY}"}) as rest:
        deadline = time.time() + 30
        while True:
            listed = (await rest.get("/runs", params={"function": "wf-batched"})).json()
            runs = [r for r in listed["runs"] if not r.get("task")]  # not its task runs
            if runs and all(r["status"] == "completed" for r in runs):
                break
            assert time.time() < deadline, runs
            await asyncio.sleep(0.2)
    assert len(runs) == 1  # full at 3: one batch, started at once (timeout is 30 s)
    got = await client.get_run(runs[0]["id"])
    assert got["output"]["gather"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert ids == {runs[0]["id"]}  # each event's run ids name the batch's run
