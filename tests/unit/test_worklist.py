"""The transaction's worklist of workflow runs to advance, and its drain by the
transaction unit (``Hub.transact``) before the commit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import NewRun, create_runs
from orchestrator.engine.lifecycle import Effects, end_run
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry
from orchestrator.store import Store, Tx
from sdk import protocol as p

DEPTH = 20


def chain(depth: int) -> dict[str, Any]:
    """A workflow ``root -> t1 -> ... -> t<depth>``."""
    tasks: list[dict[str, Any]] = [{"name": "root", "parents": []}]
    tasks += [{"name": f"t{i}", "parents": ["root" if i == 1 else f"t{i - 1}"]}
              for i in range(1, depth + 1)]
    return {"name": "chain", "kind": "workflow", "retry": {}, "tasks": tasks}


async def hub_with(store: Store, *configs: dict[str, Any]) -> Hub:
    async with store.write() as tx:
        await tx.apps.save("app", "http://127.0.0.1:1/api", "sdk", list(configs), time.time())
    return Hub(store, Registry(store), Notifier())


def test_the_worklist_holds_each_workflow_run_once_first_added_first(tmp_path: Path) -> None:
    fx = Effects(registry=Registry(Store(f"sqlite:///{tmp_path / 'unused.db'}")))
    assert fx.next_to_advance() is None
    fx.advance_later("wf-b", 2.0)
    fx.advance_later("wf-a", 3.0)
    fx.advance_later("wf-b", 4.0)  # already on it: its place and time stay
    assert fx.next_to_advance() == ("wf-b", 2.0)
    fx.advance_later("wf-b", 5.0)  # taken off, then added again (a task it cancelled)
    assert fx.next_to_advance() == ("wf-a", 3.0)
    assert fx.next_to_advance() == ("wf-b", 5.0)
    assert fx.next_to_advance() is None


async def test_a_new_workflow_run_starts_its_root_task_before_the_commit(store: Store) -> None:
    hub = await hub_with(store, chain(2))
    seen: list[dict[str, float]] = []

    async def work(tx: Tx, fx: Effects) -> list[str]:
        ids = await create_runs(tx, [NewRun("chain", "null")], 100.0, fx)
        seen.append(dict(fx.to_advance))  # not advanced yet: on the worklist
        assert await tx.runs.children_of(ids[0]) == []
        return ids

    [wf] = await hub.transact(work)
    assert seen == [{wf: 100.0}]
    async with store.read() as tx:
        children = await tx.runs.children_of(wf)
        root = await tx.runs.get(children[0].id)
    assert [(c.task, c.status) for c in children] == [("root", p.RunStatus.QUEUED)]
    assert root.created_at == 100.0  # advanced with the time it was added at


async def test_skips_cascading_through_a_deep_chain_end_the_workflow_in_one_transaction(
    store: Store,
) -> None:
    hub = await hub_with(store, chain(DEPTH))
    [wf] = await hub.transact(
        lambda tx, fx: create_runs(tx, [NewRun("chain", "null")], time.time(), fx))
    async with store.read() as tx:
        [root] = await tx.runs.children_of(wf)

    async def skip_root(tx: Tx, fx: Effects) -> None:
        # what the reducer does when the root task's call answers "skipped"
        await end_run(tx, root, p.RunStatus.SKIPPED, "null", None, time.time(), fx)
        assert list(fx.to_advance) == [wf]

    await hub.transact(skip_root)
    async with store.read() as tx:
        run = await tx.runs.get(wf)
        children = await tx.runs.children_of(wf)
        queued = await tx.queue.next_wakeup()
    assert {c.task: c.status for c in children} == {
        "root": p.RunStatus.SKIPPED, **{f"t{i}": p.RunStatus.SKIPPED for i in range(1, DEPTH + 1)}}
    assert run.status == p.RunStatus.COMPLETED
    assert json.loads(run.output_json) == {}  # no task completed
    assert queued is None  # nothing left to call: the root's queue row went with it


async def test_a_task_failing_ends_the_workflow_once_though_it_is_added_again(
    store: Store,
) -> None:
    """The failure cancels the sibling still running, which puts the workflow on the
    worklist again while it is being advanced: advancing it again changes nothing."""
    config = {"name": "pair", "kind": "workflow", "retry": {},
              "tasks": [{"name": "a", "parents": []}, {"name": "b", "parents": []}]}
    hub = await hub_with(store, config)
    [wf] = await hub.transact(
        lambda tx, fx: create_runs(tx, [NewRun("pair", "null")], time.time(), fx))
    async with store.read() as tx:
        tasks = {c.task: c for c in await tx.runs.children_of(wf)}
    err = json.dumps({"type": "Boom", "message": "no"})
    await hub.transact(lambda tx, fx: end_run(tx, tasks["a"], p.RunStatus.FAILED, None, err,
                                              time.time(), fx))
    async with store.read() as tx:
        run = await tx.runs.get(wf)
        b = await tx.runs.get(tasks["b"].id)
    assert run.status == p.RunStatus.FAILED
    assert json.loads(run.error_json)["task"] == "a"
    assert b.status == p.RunStatus.CANCELLED
