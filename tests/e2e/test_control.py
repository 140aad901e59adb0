"""Control of runs: cancel (with children, on event, in bulk), replay, timeouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sdk import Client, OrchestratorError, RunFailedError
from tests.e2e.conftest import Stack


async def _until(pred, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        value = await pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_cancel_a_run_and_its_children(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("long-parent", 3)

    async def children_sleeping() -> list[str] | None:
        run = await client.get_run(h.id)
        kids = run["children"]
        if len(kids) != 3:
            return None
        for k in kids:
            if not (await client.get_run(k["id"]))["waiting"]:
                return None
        return [k["id"] for k in kids]

    kids = await _until(children_sleeping)
    out = await client.cancel(h.id, reason="customer changed their mind")
    assert set(out["cancelled"]) == {h.id, *kids}
    run = await client.get_run(h.id)
    assert run["status"] == "cancelled"
    assert run["error"] == {"type": "Cancelled", "message": "customer changed their mind"}
    # ended while its children ran (nothing gathered into its memo): still listed
    assert sorted(k["id"] for k in run["children"]) == sorted(kids)
    for k in kids:
        child = await client.get_run(k)
        assert child["status"] == "cancelled" and child["waiting"] is None
    with pytest.raises(RunFailedError):
        await h.result(timeout=5)
    r = await rest.post(f"/runs/{h.id}/cancel", json={})
    assert r.status_code == 409  # already ended


async def test_cancel_on_event(client: Client) -> None:
    a = await client.run_no_wait("cancellable", {"order_id": "o-1"})
    b = await client.run_no_wait("cancellable", {"order_id": "o-2"})
    await _until(lambda: _waiting(client, a.id))
    await client.send_event("order.cancelled", {"order_id": "o-1"})
    run = await client.wait(a.id, timeout=10)
    assert run["status"] == "cancelled" and run["error"]["type"] == "CancelledByEvent"
    assert (await client.get_run(b.id))["status"] == "running"  # another order: untouched
    await client.send_event("order.shipped", {"order_id": "o-2"})
    assert await b.result(timeout=10) == "shipped"


async def _waiting(client: Client, run_id: str) -> bool:
    return bool((await client.get_run(run_id))["waiting"])


async def test_bulk_cancel_by_filter(client: Client) -> None:
    since = datetime.now(UTC)
    ids = [(await client.run_no_wait("long-child", i)).id for i in range(3)]  # sleep 60 s
    cancelled = await client.cancel_many(function="long-child", status=["queued", "running"],
                                         since=since)
    assert set(ids) == set(cancelled)
    for rid in ids:
        assert (await client.get_run(rid))["status"] == "cancelled"
    assert await client.cancel_many(function="long-child", since=since) == []


async def test_replay_from_the_failed_step(client: Client, stack: Stack) -> None:
    flag = "replay-flag-1"
    h = await client.run_no_wait("replayable", flag)
    with pytest.raises(RunFailedError):
        await h.result(timeout=20)
    failed = await client.get_run(h.id)
    assert [s["status"] for s in failed["steps"]] == ["completed", "failed"]
    Path(stack.tmp, flag).touch()
    await client.replay(h.id)
    out = await h.result(timeout=20)
    assert out == {"first": 1, "second": "second done", "first_runs": 1}  # not re-executed
    run = await client.get_run(h.id)
    assert [(s["id"], s["status"]) for s in run["steps"]] == [("first", "completed"),
                                                               ("second", "completed")]
    [earlier] = run["history"]
    assert earlier["status"] == "failed" and earlier["from"] == "failed_step"
    assert earlier["error"]["type"] == "StepError"
    assert [s["id"] for s in earlier["steps"]] == ["second"]


async def test_replay_from_start_with_a_new_input(client: Client, stack: Stack) -> None:
    h = await client.run_no_wait("replayable", "no-such-flag")
    with pytest.raises(RunFailedError):
        await h.result(timeout=20)
    Path(stack.tmp, "replay-flag-2").touch()
    await client.replay(h.id, from_start=True, input="replay-flag-2")
    out = await h.result(timeout=20)
    assert out["first_runs"] == 2 and out["second"] == "second done"  # re-ran from scratch
    assert (await client.get_run(h.id))["input"] == "replay-flag-2"


async def test_replay_of_a_workflow_keeps_completed_tasks(client: Client, stack: Stack) -> None:
    h = await client.run_no_wait("replay-flow", "replay-flag-3")
    with pytest.raises(RunFailedError):
        await h.result(timeout=20)
    Path(stack.tmp, "replay-flag-3").touch()
    await client.replay(h.id)
    out = await h.result(timeout=20)
    assert out == {"rf-one": 1, "rf-two": "two done"}  # rf-one did not run again


async def test_bulk_replay(client: Client, stack: Stack) -> None:
    ids = [(await client.run_no_wait("replayable", "replay-flag-4")).id for _ in range(3)]
    for rid in ids:
        with pytest.raises(RunFailedError):
            await client.result(rid, timeout=20)
    Path(stack.tmp, "replay-flag-4").touch()
    replayed = await client.replay_many(function="replayable", status="failed")
    assert set(ids) <= set(replayed)
    for rid in ids:
        assert (await client.result(rid, timeout=20))["second"] == "second done"


async def test_replay_of_a_running_run_is_refused(client: Client) -> None:
    h = await client.run_no_wait("long-child", 1)
    await _until(lambda: _waiting(client, h.id))
    with pytest.raises(OrchestratorError) as ei:
        await client.replay(h.id)
    assert ei.value.status == 409 and "running" in str(ei.value)
    await client.cancel(h.id)


async def test_run_timeout(client: Client) -> None:
    h = await client.run_no_wait("run-timeout")
    run = await client.wait(h.id, timeout=20)
    assert run["status"] == "timed_out"
    assert run["error"]["type"] == "RunTimeout"


async def test_queue_timeout(client: Client, stack: Stack) -> None:
    stack.app.stop()
    try:
        h = await client.run_no_wait("queue-timeout")
        run = await client.wait(h.id, timeout=20)
        assert run["status"] == "timed_out"
        assert run["error"]["type"] == "QueueTimeout"
        # a replay waits queued again, under the same limit
        await client.replay(h.id)
        run = await client.wait(h.id, timeout=20)
        assert run["status"] == "timed_out"
        assert run["error"]["type"] == "QueueTimeout"
    finally:
        stack.app.start()
    assert await client.run("queue-timeout", timeout=20) == "started"


async def test_bad_control_requests(rest: httpx.AsyncClient) -> None:
    assert (await rest.post("/runs/nope/cancel", json={})).status_code == 404
    assert (await rest.post("/runs/nope/replay", json={})).status_code == 404
    r = await rest.post("/runs/cancel", json={})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    r = await rest.post("/runs/cancel", json={"status": "sleeping"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "status"
    r = await rest.post("/runs/replay", json={"function": "echo", "from": "middle"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "from"


async def test_replay_of_a_workflow_from_the_start(client: Client, stack: Stack) -> None:
    h = await client.run_no_wait("replay-flow", "replay-flag-5")
    with pytest.raises(RunFailedError):
        await h.result(timeout=20)
    first = await client.get_run(h.id)
    Path(stack.tmp, "replay-flag-5").touch()
    await client.replay(h.id, from_start=True)
    out = await h.result(timeout=20)
    assert out == {"rf-one": 1, "rf-two": "two done"}  # new task runs (their own counters)
    run = await client.get_run(h.id)
    tasks = {c["step"]: c["status"] for c in run["children"]}
    assert tasks["rf-one"] == tasks["rf-two"] == "completed"
    # the earlier task runs stay visible, set aside under "<task>#<replay number>"
    assert tasks["rf-one#1"] == "completed" and tasks["rf-two#1"] == "failed"
    assert len(run["children"]) == len(first["children"]) + 2


async def test_cancel_discards_the_answer_of_a_call_in_flight(client: Client) -> None:
    h = await client.run_no_wait("slow-step")
    await asyncio.sleep(0.5)  # the app is inside the 1.5 s step
    run = await client.get_run(h.id)
    assert run["status"] == "running" and run["waiting"] is None  # in flight
    await client.cancel(h.id)
    await asyncio.sleep(1.5)  # the app answers after the cancel
    run = await client.get_run(h.id)
    assert run["status"] == "cancelled"
    assert run["steps"] == []  # the late answer was discarded, nothing recorded
