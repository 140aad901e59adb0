"""One trigger API for every runnable: run, run_no_wait, bulk, schedule, cron."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sdk import Client, OrchestratorError
from tests.apps import flows


async def test_run_and_run_no_wait_on_the_runnable(client: Client) -> None:
    flows.echo.bind(client)
    flows.diamond.bind(client)
    assert await flows.echo.run({"x": 1}, timeout=20) == {"x": 1}
    h = await flows.diamond.run_no_wait(3)
    assert (await h.result(timeout=30))["d"] == 4 * 2 + 4 * 3
    assert (await h.get())["status"] == "completed"


def test_sync_trigger_api(client: Client) -> None:
    flows.echo.bind(client)
    try:
        assert flows.echo.sync.run("hi", timeout=20) == "hi"
        ids = flows.echo.sync.run_many([1, 2, 3])
        assert [client.sync.result(i, timeout=20) for i in ids] == [1, 2, 3]
    finally:
        client.sync.close()


async def test_bulk_of_500_in_one_call(client: Client, rest: httpx.AsyncClient) -> None:
    flows.echo.bind(client)
    t0 = time.monotonic()
    handles = await flows.echo.run_many(list(range(500)))
    accepted = time.monotonic() - t0
    assert len({h.id for h in handles}) == 500
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert results == list(range(500))
    assert accepted < 10  # a sanity bound only; speed is measured in bench/


async def test_bulk_is_all_or_nothing(rest: httpx.AsyncClient) -> None:
    before = (await rest.get("/runs", params={"function": "echo", "limit": 500})).json()
    r = await rest.post("/runs/bulk", json={"runs": [
        {"function": "echo", "input": 1}, {"function": "no-such-fn", "input": 2}]})
    assert r.status_code == 404 and r.json()["error"]["field"] == "function"
    after = (await rest.get("/runs", params={"function": "echo", "limit": 500})).json()
    assert [x["id"] for x in after["runs"]] == [x["id"] for x in before["runs"]]


async def test_schedule_in_two_seconds(client: Client) -> None:
    flows.echo.bind(client)
    at = datetime.now(UTC) + timedelta(seconds=2)
    sched = await flows.echo.schedule(at, "later")
    assert sched["id"] in [s["id"] for s in await client.list_schedules("echo")]
    assert sched["run_id"] is None
    for _ in range(100):
        sched = await client.get_schedule(sched["id"])
        if sched["run_id"]:
            break
        await asyncio.sleep(0.1)
    assert sched["run_id"], "the schedule did not fire"
    assert sched["id"] not in [s["id"] for s in await client.list_schedules("echo")]
    run = await client.wait(sched["run_id"], timeout=20)
    assert run["output"] == "later"
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    assert at - timedelta(milliseconds=50) <= created < at + timedelta(seconds=2)


async def test_delete_a_schedule(client: Client, rest: httpx.AsyncClient) -> None:
    sched = await client.schedule("echo", datetime.now(UTC) + timedelta(hours=1), "x")
    await client.delete_schedule(sched["id"])
    assert sched["id"] not in [s["id"] for s in await client.list_schedules()]
    r = await rest.delete(f"/schedules/{sched['id']}")
    assert r.status_code == 404


async def test_bad_schedules_and_crons_are_refused(rest: httpx.AsyncClient) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    cases = [
        ("/schedules", {"function": "echo", "at": past}, 422, "at"),
        ("/schedules", {"function": "echo", "at": "tomorrow"}, 422, "at"),
        ("/schedules", {"function": "echo", "at": "2030-01-01T00:00:00"}, 422, "at"),
        ("/schedules", {"function": "nope", "at": "2030-01-01T00:00:00Z"}, 404, "function"),
        ("/crons", {"function": "echo", "expression": "every minute"}, 422, "expression"),
        ("/crons", {"function": "echo", "expression": "61 * * * *"}, 422, "expression"),
        ("/crons", {"function": "echo", "expression": "* * * * *", "timezone": "Mars/Olympus"},
         422, "timezone"),
        ("/crons", {"function": "nope", "expression": "* * * * *"}, 404, "function"),
        ("/runs/bulk", {"function": "echo", "inputs": []}, 422, "inputs"),
    ]
    for path, body, status, field in cases:
        r = await rest.post(path, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["field"] == field, (path, body, r.text)


async def test_cron_list_and_delete(client: Client) -> None:
    cron = await client.create_cron("echo", "0 9 * * 1-5", timezone="Europe/Paris",
                                    input={"daily": True})
    assert cron["timezone"] == "Europe/Paris" and cron["source"] == "api"
    next_fire = datetime.fromisoformat(cron["next_fire_at"].replace("Z", "+00:00"))
    assert next_fire.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")).hour == 9
    assert cron["id"] in [c["id"] for c in await client.list_crons("echo")]
    await client.delete_cron(cron["id"])
    assert cron["id"] not in [c["id"] for c in await client.list_crons("echo")]
    with pytest.raises(OrchestratorError) as ei:
        await client.delete_cron(cron["id"])
    assert ei.value.status == 404


async def _cron_runs(rest: httpx.AsyncClient, cid: str, since: float) -> list[str]:
    """The runs cron ``cid`` started (``echo`` runs created since ``since``)."""
    out: list[str] = []
    page = (await rest.get("/runs", params={"function": "echo", "limit": 200})).json()
    for r in page["runs"]:
        created = datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp()
        if created < since:
            continue
        run = (await rest.get(f"/runs/{r['id']}")).json()
        if (run["idempotency_key"] or "").startswith(f"cron:{cid}:"):
            out.append(r["id"])
    return out


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.3)


async def test_a_paused_cron_does_not_fire_and_a_resumed_one_does(
    rest: httpx.AsyncClient,
) -> None:
    since = time.time() - 1
    r = await rest.post("/crons", json={"function": "echo", "expression": "* * * * * *",
                                        "input": {"every": "second"}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    try:
        async def fired(more_than: int) -> bool:
            return len(await _cron_runs(rest, cid, since)) > more_than

        await _until(lambda: fired(0))
        r = await rest.post(f"/crons/{cid}/pause")
        assert r.status_code == 200 and r.json()["paused"] is True, r.text
        n = len(await _cron_runs(rest, cid, since))
        at_pause = (await rest.get(f"/crons/{cid}")).json()["next_fire_at"]
        await asyncio.sleep(3.0)
        assert len(await _cron_runs(rest, cid, since)) == n  # three ticks, no run
        shown = (await rest.get(f"/crons/{cid}")).json()
        assert shown["paused"] is True
        assert shown["next_fire_at"] > at_pause  # its ticks moved on (ISO strings sort)
        r = await rest.post(f"/crons/{cid}/resume")
        assert r.status_code == 200 and r.json()["paused"] is False, r.text
        await _until(lambda: fired(n))
        # the missed ticks did not fire on resuming: one run per tick since, not a burst
        await asyncio.sleep(1.0)
        assert len(await _cron_runs(rest, cid, since)) <= n + 4
    finally:
        await rest.delete(f"/crons/{cid}")
    assert (await rest.get(f"/crons/{cid}")).status_code == 404
