"""Every step kind end to end: orchestrator + app under uvicorn, SQLite file store."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from sdk import Client, RunFailedError


async def test_async_chain_of_steps(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("chain", 20)
    assert await h.result(timeout=20) == sum(range(20))
    run = (await rest.get(f"/runs/{h.id}")).json()
    assert run["status"] == "completed"
    steps = run["steps"]
    assert [s["id"] for s in steps] == ["add"] + [f"add:{i}" for i in range(1, 20)]
    assert all(s["status"] == "completed" and s["attempts"] == 1 for s in steps)
    assert all(s["started_at"] and s["ended_at"] for s in steps)


async def test_sync_function_with_sync_and_async_steps(client: Client) -> None:
    assert await client.run("sync-chain", 5, timeout=20) == {"total": 10, "doubled": 20}


async def test_step_retried_then_succeeds(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("flaky", 2)
    assert await h.result(timeout=20) == {"result": "ok after 3"}
    [step] = (await rest.get(f"/runs/{h.id}")).json()["steps"]
    assert step["attempts"] == 3 and step["status"] == "completed"


async def test_step_failing_for_good_is_catchable(client: Client) -> None:
    out = await client.run("step-fails-caught", timeout=20)
    assert out == {"caught": "ValueError", "message": "card declined", "step": "charge"}


async def test_uncaught_step_failure_fails_the_run(client: Client,
                                                   rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("step-fails-for-good")
    with pytest.raises(RunFailedError) as ei:
        await h.result(timeout=20)
    run = ei.value.run
    assert run["status"] == "failed"
    assert run["error"]["type"] == "StepError"
    assert "account closed" in run["error"]["message"]
    [step] = (await rest.get(f"/runs/{h.id}")).json()["steps"]
    # NonRetriableError: one attempt, despite max_attempts=2
    assert step["status"] == "failed" and step["attempts"] == 1
    assert step["error"]["type"] == "NonRetriableError"


async def test_retry_after_is_honoured(client: Client, rest: httpx.AsyncClient) -> None:
    t0 = time.monotonic()
    assert await client.run("retry-after", timeout=20) == "done"
    assert time.monotonic() - t0 >= 0.3


async def test_function_level_retry_keeps_memo(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("function-retry")
    assert await h.result(timeout=20) == {"before": "recorded once", "attempt": 2}
    run = (await rest.get(f"/runs/{h.id}")).json()
    assert run["attempt"] == 2
    assert [s["id"] for s in run["steps"]] == ["before"]


async def test_two_second_sleep(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("sleeper", 2)
    await asyncio.sleep(0.5)
    run = (await rest.get(f"/runs/{h.id}")).json()
    assert run["status"] == "running"
    assert run["waiting"]["kind"] == "sleep" and run["waiting"]["until"].endswith("Z")
    out = await h.result(timeout=20)
    assert 2.0 <= out["slept"] < 6.0


async def test_wait_for_event_satisfied_by_matching_event(
    client: Client, rest: httpx.AsyncClient
) -> None:
    h = await client.run_no_wait("waiter", {"key": "k-1", "timeout": 30})
    for _ in range(100):
        run = (await rest.get(f"/runs/{h.id}")).json()
        if run["waiting"] and run["waiting"]["kind"] == "event":
            break
        await asyncio.sleep(0.05)
    assert run["waiting"]["event"] == "test.go"
    assert run["waiting"]["match"] == {"data.key": "k-1"}
    await client.send_event("test.go", {"key": "other"})  # does not match
    await asyncio.sleep(0.3)
    assert (await rest.get(f"/runs/{h.id}")).json()["status"] == "running"
    await client.send_event("test.go", {"key": "k-1", "extra": 7})
    out = await h.result(timeout=20)
    assert out["event"]["name"] == "test.go"
    assert out["event"]["data"] == {"key": "k-1", "extra": 7}


async def test_wait_for_event_times_out(client: Client) -> None:
    t0 = time.monotonic()
    out = await client.run("waiter", {"key": "never", "timeout": 1.0}, timeout=20)
    assert out == {"event": None}
    assert time.monotonic() - t0 >= 1.0


async def test_fan_out_fifty_children(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("fan-out", 50)
    assert await h.result(timeout=30) == {"sum": 2 * sum(range(50)), "n": 50}
    run = (await rest.get(f"/runs/{h.id}")).json()
    assert len(run["children"]) == 50
    assert {c["status"] for c in run["children"]} == {"completed"}
    child = (await rest.get(f"/runs/{run['children'][0]['id']}")).json()
    assert child["parent_id"] == h.id


async def test_child_failure_surfaces_as_typed_error(client: Client) -> None:
    out = await client.run("fan-out-failing", timeout=20)
    assert out == {"failed": ["completed", "failed"]}


async def test_spawn_without_waiting(client: Client) -> None:
    ids = await client.run("spawner-no-wait", timeout=20)
    assert len(ids) == 1
    assert await client.result(ids[0], timeout=20) == 10


async def test_send_event_step_resumes_a_waiter(client: Client) -> None:
    h = await client.run_no_wait("waiter", {"key": "from-step", "timeout": 30})
    await asyncio.sleep(0.5)
    [event_id] = await client.run("sender", "from-step", timeout=20)
    out = await h.result(timeout=20)
    assert out["event"]["id"] == event_id


async def test_event_triggers_a_run(client: Client) -> None:
    res = await client.send_event("test.trigger", {"x": 1})
    [[run_id]] = res["runs"]
    assert await client.result(run_id, timeout=20) == {"event_name": "test.trigger",
                                                        "data": {"x": 1}}


async def test_event_idempotency(client: Client, rest: httpx.AsyncClient) -> None:
    first = await client.send_event("test.trigger", {"n": 1}, id="evt-dedupe-1")
    second = await client.send_event("test.trigger", {"n": 2}, id="evt-dedupe-1")
    assert first["ids"] == second["ids"] and first["runs"] == second["runs"]
    assert first["duplicate"] == [False] and second["duplicate"] == [True]
    assert first["ids"] == ["evt-dedupe-1"] and len(first["runs"][0]) == 1
    runs = (await rest.get("/runs", params={"function": "triggered", "limit": 500})).json()
    mine = [r for r in runs["runs"] if r["id"] == first["runs"][0][0]]
    assert len(mine) == 1


async def test_an_event_repeated_within_one_request_starts_one_run(
        rest: httpx.AsyncClient) -> None:
    r = await rest.post("/events", json=[
        {"name": "test.trigger", "data": {"n": 1}, "id": "evt-twice"},
        {"name": "test.trigger", "data": {"n": 2}, "id": "evt-once"},
        {"name": "test.trigger", "data": {"n": 3}, "id": "evt-twice"},
    ])
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["ids"] == ["evt-twice", "evt-once", "evt-twice"]
    assert out["runs"][0] == out["runs"][2] and len(out["runs"][0]) == 1
    assert len(out["runs"][1]) == 1 and out["runs"][1] != out["runs"][0]
    assert out["duplicate"] == [False, False, True]


async def test_run_idempotency_key(client: Client) -> None:
    a = await client.run_no_wait("double", 3, idempotency_key="once")
    b = await client.run_no_wait("double", 3, idempotency_key="once")
    assert a.id == b.id


async def test_typed_input_validation(client: Client) -> None:
    assert await client.run("typed", {"name": "a", "count": 2}, timeout=20) == "a x2"
    with pytest.raises(RunFailedError) as ei:
        await client.run("typed", {"name": "a", "count": "many"}, timeout=20)
    assert ei.value.run["error"]["type"] == "InputValidationError"
    assert "count" in ei.value.run["error"]["message"]


async def test_non_determinism_is_reported(client: Client) -> None:
    with pytest.raises(RunFailedError) as ei:
        await client.run("nondeterministic", timeout=20)
    err = ei.value.run["error"]
    assert err["type"] == "NonDeterminismError"
    assert "'renamed'" in err["message"] and "'first'" in err["message"]


async def test_oversized_step_output_fails_that_step(client: Client) -> None:
    assert await client.run("big-output", timeout=20) == "OutputTooLargeError"


async def test_concurrent_starts_with_one_idempotency_key_make_one_run(client: Client) -> None:
    handles = await asyncio.gather(*(
        client.run_no_wait("double", 7, idempotency_key="raced-key") for _ in range(20)))
    assert len({h.id for h in handles}) == 1
    assert await handles[0].result(timeout=20) == 14
