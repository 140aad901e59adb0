"""DAG workflows: a workflow run starts each task (a run of its own) once all the task's
parents are done, and ends when every task is done or one has failed.

Semantics (documented in docs/workflows.md):
- a task starts when every parent has ended ``completed`` or ``skipped``;
- a task whose parents were *all* skipped is skipped too, without a call; a task with at
  least one parent that ran does run, and sees the skipped ones as skipped;
- a task that ends failed, cancelled or timed out fails the workflow: tasks not started
  are never started, tasks still running are cancelled, then the ``on_failure`` task (if
  declared) runs with the failure's details, and the workflow ends ``failed``;
- the workflow's output is ``{task: output}`` of its completed tasks.

Nothing here is called back from below: ending a task run, creating a workflow run and
replaying one put the workflow run on the transaction's worklist (``Effects``), and the
transaction unit (``hub.Hub.transact``) drains it with ``advance_worklist`` before it
commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrator.engine.ingest import NewRun, create_runs
from orchestrator.engine.lifecycle import Effects, cancel_run, end_run, js, outcome
from orchestrator.store import ChildRow, RunRow, Tx
from sdk import protocol as p

OK = (p.RunStatus.COMPLETED, p.RunStatus.SKIPPED)
FAILURE_KEY = "__failure__"
"""Where an on_failure task run keeps the failure (task names cannot start with '_')."""


def on_failure_task(config: Mapping[str, Any]) -> str | None:
    """The name of a workflow's on_failure task, if it declares one."""
    name = (config.get("on_failure") or {}).get("name")
    return str(name) if name else None


def declared_tasks(config: Mapping[str, Any]) -> list[str]:
    """A workflow's tasks as declared, its on_failure task last."""
    fail = on_failure_task(config)
    return [t["name"] for t in config.get("tasks", [])] + ([fail] if fail else [])


async def advance_worklist(tx: Tx, fx: Effects) -> None:
    """Advance the workflow runs on the worklist, first added first, until it is empty
    (advancing one may add more: a task it cancels, the workflow run it ends)."""
    while (item := fx.next_to_advance()) is not None:
        await advance(tx, *item, fx)


async def advance(tx: Tx, wf_id: str, now: float, fx: Effects) -> None:
    """Start what is ready, or end the workflow run. Idempotent; serialized per workflow
    run by a row lock (PostgreSQL) or the single writer (SQLite)."""
    while await _step(tx, wf_id, now, fx):
        pass


async def _step(tx: Tx, wf_id: str, now: float, fx: Effects) -> bool:
    """One look at the workflow; True if it should look again (tasks were skipped)."""
    wf = await tx.runs.lock(wf_id)
    if wf is None or wf.status in p.TERMINAL:
        return False
    info = (await fx.registry.get_many({wf.function})).get(wf.function)
    if info is None:
        err = {"type": "FunctionNotFound", "message": f"workflow {wf.function!r} is gone"}
        await end_run(tx, wf, p.RunStatus.FAILED, None, js(err), now, fx)
        return False
    tasks = {t["name"]: t for t in info.config.get("tasks", [])}
    on_failure = on_failure_task(info.config)
    runs: dict[str, ChildRow] = {}
    for ch in await tx.runs.children_of(wf_id):
        if ch.parent_step and "#" not in ch.parent_step:  # "<task>#<n>": set aside by replay
            runs[ch.parent_step] = ch
    failed = [t for t, r in runs.items()
              if t != on_failure and r.status in p.TERMINAL and r.status not in OK]
    if failed:
        await _fail(tx, wf, runs, failed[0], on_failure, now, fx)
        return False
    if all(t in runs and runs[t].status in OK for t in tasks):
        output = {t: json.loads(r.output_json) if r.output_json is not None else None
                  for t, r in runs.items() if r.status == p.RunStatus.COMPLETED}
        await end_run(tx, wf, p.RunStatus.COMPLETED, js(output), None, now, fx)
        return False
    specs = []
    skipped = []
    for name, t in tasks.items():
        parents = t.get("parents", [])
        if name in runs or not all(q in runs and runs[q].status in OK for q in parents):
            continue
        if parents and all(runs[q].status == p.RunStatus.SKIPPED for q in parents):
            skipped.append(name)
            continue
        view = {q: p.parent_result(runs[q].status, **outcome(runs[q])) for q in parents}
        specs.append(NewRun(wf.function, wf.input_json, wf.event_json, parent_id=wf_id,
                            parent_step=name, task=name, parents_json=js(view),
                            inherited_priority=wf.priority))
    if specs:
        await create_runs(tx, specs, now, fx)  # sets fx.wake for runs not claimed
    if skipped:  # skipped without a call: recorded, then look again (children may be ready)
        await create_runs(tx, [NewRun(wf.function, wf.input_json, wf.event_json,
                                      parent_id=wf_id, parent_step=n, task=n, skipped=True)
                               for n in skipped], now, fx)
        return True
    return False


async def _fail(tx: Tx, wf: RunRow, runs: dict[str, ChildRow], task: str,
                on_failure: str | None,
                now: float, fx: Effects) -> None:
    failure = p.task_failure(task, runs[task].status, **outcome(runs[task]))
    for name, r in runs.items():  # stop what still runs
        if name != on_failure and r.status not in p.TERMINAL:
            await cancel_run(tx, r, p.RunStatus.CANCELLED,
                             {"type": "Cancelled", "message": f"task {task!r} failed"}, now, fx)
    if on_failure and on_failure not in runs:
        await create_runs(tx, [NewRun(wf.function, wf.input_json, wf.event_json,
                                      parent_id=wf.id, parent_step=on_failure, task=on_failure,
                                      parents_json=js({FAILURE_KEY: failure}),
                                      inherited_priority=wf.priority)], now, fx)
        await tx.runs.set_waiting(wf.id, js({"kind": "on_failure", "task": on_failure,
                                             "failed_task": task}))
        return
    if on_failure and runs[on_failure].status not in p.TERMINAL:
        return  # on_failure still running: the workflow ends when it does
    err = (failure.get("error") or {}) if isinstance(failure.get("error"), dict) else {}
    error = {"type": "TaskFailed", "message": f"task {task!r} {failure['status']}: "
             f"{err.get('type', '')}: {err.get('message', '')}", "task": task}
    await end_run(tx, wf, p.RunStatus.FAILED, None, js(error), now, fx)
