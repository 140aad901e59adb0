"""DAG workflows end to end: parallelism, fan-in, branches, failures, durable tasks."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sdk import Client, RunFailedError


async def _children(rest: httpx.AsyncClient, run_id: str) -> dict[str, dict]:
    run = (await rest.get(f"/runs/{run_id}")).json()
    return {c["task"]: c for c in run["children"] if c["task"]}


async def test_diamond_middle_tasks_run_at_the_same_time(
    client: Client, rest: httpx.AsyncClient
) -> None:
    h = await client.run_no_wait("diamond", 1)
    out = await h.result(timeout=30)
    assert out["a"] == 2 and out["d"] == 2 * 2 + 2 * 3
    b, c = out["b"], out["c"]
    assert b["start"] < c["end"] and c["start"] < b["end"]  # the two 0.5 s tasks overlap
    assert max(b["end"], c["end"]) - min(b["start"], c["start"]) < 0.95
    tasks = await _children(rest, h.id)
    assert set(tasks) == {"a", "b", "c", "d"}
    assert {t["status"] for t in tasks.values()} == {"completed"}
    task_b = (await rest.get(f"/runs/{tasks['b']['id']}")).json()
    assert task_b["task"] == "b" and task_b["parent_id"] == h.id
    assert task_b["parents"] == {"a": {"status": "completed", "output": 2}}


async def test_fan_in_of_twenty_parents(client: Client) -> None:
    out = await client.run("fan-in", 0, timeout=30)
    assert out["join"] == sum(range(20))
    assert len(out) == 21


@pytest.mark.parametrize(("amount", "ran", "skipped"), [
    (500, "big", "small"),
    (5, "small", "big"),
])
async def test_skipped_branch(client: Client, rest: httpx.AsyncClient, amount: int,
                              ran: str, skipped: str) -> None:
    h = await client.run_no_wait("branching", {"amount": amount})
    out = await h.result(timeout=30)
    assert out["merge"] == {"big": "big path" if ran == "big" else None,
                            "small": "small path" if ran == "small" else None,
                            "skipped": [skipped]}
    assert skipped not in out and ran in out
    tasks = await _children(rest, h.id)
    assert tasks[skipped]["status"] == "skipped"
    # a task whose only parent was skipped is skipped too (without a call)
    assert tasks["after-big"]["status"] == ("completed" if ran == "big" else "skipped")


async def test_failing_task_cancels_the_rest_and_runs_on_failure(
    client: Client, rest: httpx.AsyncClient
) -> None:
    h = await client.run_no_wait("failing-flow")
    with pytest.raises(RunFailedError) as ei:
        await h.result(timeout=30)
    err = ei.value.run["error"]
    assert err["type"] == "TaskFailed" and err["task"] == "boom"
    assert "the warehouse is on fire" in err["message"]
    tasks = await _children(rest, h.id)
    assert tasks["boom"]["status"] == "failed"
    assert tasks["slow-sibling"]["status"] == "cancelled"
    assert "never" not in tasks  # not started
    report = (await rest.get(f"/runs/{tasks['report']['id']}")).json()
    assert report["status"] == "completed"
    failure = report["output"]["failure"]
    assert failure["task"] == "boom" and failure["status"] == "failed"
    assert failure["error"]["type"] == "NonRetriableError"


async def test_durable_task_inside_a_dag(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("durable-dag", "k-42")
    for _ in range(200):
        tasks = await _children(rest, h.id)
        approve = tasks.get("approve")
        if approve:
            run = (await rest.get(f"/runs/{approve['id']}")).json()
            if run["waiting"] and run["waiting"]["kind"] == "event":
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the approve task never waited for its event")
    await client.send_event("flow.approved", {"key": "k-42", "by": "ada"})
    out = await h.result(timeout=30)
    assert out["approve"] == {"before": "checked", "approved_by": "ada"}
    approve_run = (await rest.get(f"/runs/{tasks['approve']['id']}")).json()
    assert [s["kind"] for s in approve_run["steps"]] == ["step", "sleep", "wait"]


async def test_task_timeout_fails_the_workflow(client: Client, rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("slow-flow")
    with pytest.raises(RunFailedError) as ei:
        await h.result(timeout=30)
    assert "timed_out" in ei.value.run["error"]["message"]
    tasks = await _children(rest, h.id)
    task = (await rest.get(f"/runs/{tasks['too-slow']['id']}")).json()
    assert task["status"] == "timed_out" and task["error"]["type"] == "RunTimeout"


async def test_workflow_graph_is_visible(rest: httpx.AsyncClient) -> None:
    fns = {f["name"]: f for f in (await rest.get("/functions")).json()["functions"]}
    wf = fns["diamond"]
    assert wf["kind"] == "workflow"
    assert {t["name"]: t["parents"] for t in wf["tasks"]} == {
        "a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert fns["failing-flow"]["on_failure"]["name"] == "report"


@pytest.mark.parametrize(("case", "message"), [
    ("cycle", "has a cycle: a -> b -> c -> a"),
    ("unknown-parent", "unknown parent 'x'"),
    ("duplicate", "declares task 'a' twice"),
    ("bad-cron", "has 3 fields"),
])
async def test_a_broken_graph_is_refused_at_registration(
    rest: httpx.AsyncClient, bad_app: str, case: str, message: str
) -> None:
    r = await rest.post("/apps", json={"url": f"{bad_app}/{case}"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "functions" and message in err["message"], err
    fns = (await rest.get("/functions")).json()["functions"]
    assert "broken" not in {f["name"] for f in fns}  # nothing was registered


async def test_a_failed_workflow_lists_every_declared_task_with_its_state(
    client: Client, rest: httpx.AsyncClient
) -> None:
    h = await client.run_no_wait("failing-flow")
    with pytest.raises(RunFailedError):
        await h.result(timeout=30)
    run = (await rest.get(f"/runs/{h.id}")).json()
    tasks = {t["name"]: t for t in run["tasks"]}
    assert list(tasks) == ["first", "boom", "slow-sibling", "never", "report"]
    assert {n: t["status"] for n, t in tasks.items()} == {
        "first": "completed", "boom": "failed", "slow-sibling": "cancelled",
        "never": "not started", "report": "completed"}
    assert tasks["never"]["id"] is None
    assert {c["id"] for c in run["children"]} == {
        t["id"] for t in tasks.values() if t["id"]}


async def test_a_skipped_task_is_listed_as_skipped(client: Client,
                                                   rest: httpx.AsyncClient) -> None:
    h = await client.run_no_wait("branching", {"amount": 5})
    await h.result(timeout=30)
    run = (await rest.get(f"/runs/{h.id}")).json()
    states = {t["name"]: t["status"] for t in run["tasks"]}
    assert states["big"] == states["after-big"] == "skipped"
    assert states["small"] == "completed"
    task_run = (await rest.get(f"/runs/{run['tasks'][0]['id']}")).json()
    assert "tasks" not in task_run  # a task run is not a workflow run


async def test_the_on_failure_run_set_aside_by_a_replay_is_named_as_its_step(
    client: Client, rest: httpx.AsyncClient
) -> None:
    h = await client.run_no_wait("failing-flow")
    with pytest.raises(RunFailedError):
        await h.result(timeout=30)
    await client.replay(h.id)  # boom fails again: on_failure runs again
    with pytest.raises(RunFailedError):
        await h.result(timeout=30)
    run = (await rest.get(f"/runs/{h.id}")).json()
    steps = {c["step"]: c for c in run["children"]}
    assert {"report", "report#1"} <= set(steps)
    assert [(c["step"], c["task"]) for c in run["children"] if c["step"] != c["task"]] == []
    aside = (await rest.get(f"/runs/{steps['report#1']['id']}")).json()
    assert aside["task"] == "report#1" and aside["status"] == "completed"
    assert {t["name"]: t["id"] for t in run["tasks"]}["report"] == steps["report"]["id"]
