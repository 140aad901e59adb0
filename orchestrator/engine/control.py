"""Control of runs through the API: cancel and replay, one run or the runs a filter
selects. Inside a caller's transaction (``hub.Hub.transact``); ending a run and its
descendants is ``lifecycle.cancel_run``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.engine import concurrency
from orchestrator.engine.dag import on_failure_task
from orchestrator.engine.ingest import cancel_waits_for, deadline
from orchestrator.engine.lifecycle import Effects, cancel_run, js
from orchestrator.errors import Conflict, NotFound
from orchestrator.store import ChildRow, RunRow, StepRow, Tx
from sdk import protocol as p

REPLAYABLE = (p.RunStatus.FAILED, p.RunStatus.CANCELLED, p.RunStatus.TIMED_OUT)
FROM = ("failed_step", "start")
ACTIVE = (p.RunStatus.QUEUED, p.RunStatus.RUNNING)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a bulk operation applies to."""

    function: str | None = None
    statuses: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    limit: int = 1000


async def _locked(tx: Tx, run_id: str) -> RunRow:
    run = await tx.runs.lock(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}", "id")
    return run


async def cancel_one(tx: Tx, run_id: str, reason: str | None, now: float,
                     fx: Effects) -> list[str]:
    """Cancel a run that has not ended, and its descendants; the ids ended."""
    run = await _locked(tx, run_id)
    if run.status in p.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", "id")
    return await cancel_run(tx, run, p.RunStatus.CANCELLED, {
        "type": "Cancelled", "message": reason or "cancelled through the API"}, now, fx)


async def cancel_matching(tx: Tx, f: RunFilter, reason: str | None, now: float,
                          fx: Effects) -> list[str]:
    """Cancel the runs ``f`` selects among those not ended (queued and running unless it
    names statuses), and their descendants; the ids ended."""
    statuses = [s for s in (f.statuses or ACTIVE) if s not in p.TERMINAL]
    cancelled: list[str] = []
    for run in await tx.runs.matching(f.function, statuses, f.since, f.until, f.limit):
        fresh = await tx.runs.lock(run.id)
        if fresh is None or fresh.status in p.TERMINAL:
            continue  # ended meanwhile (a parent cancelled just before, say)
        cancelled += await cancel_run(tx, fresh, p.RunStatus.CANCELLED, {
            "type": "Cancelled", "message": reason or "cancelled in bulk"}, now, fx)
    return cancelled


async def replay_one(tx: Tx, run_id: str, start: str, input_json: str | None, now: float,
                     fx: Effects) -> None:
    """Replay a run that is not a workflow's task (``replay``)."""
    run = await _locked(tx, run_id)
    if run.parent_id and run.task:
        raise Conflict("replay the workflow run, not one of its tasks", "id")
    await replay(tx, run, start, input_json, now, fx)


async def replay_matching(tx: Tx, f: RunFilter, start: str, now: float,
                          fx: Effects) -> list[str]:
    """Replay the replayable runs ``f`` selects (tasks go with their workflow); their ids."""
    statuses = [s for s in (f.statuses or REPLAYABLE) if s in REPLAYABLE]
    replayed: list[str] = []
    for run in await tx.runs.matching(f.function, statuses, f.since, f.until, f.limit):
        if run.parent_id and run.task:
            continue  # tasks are replayed through their workflow
        fresh = await tx.runs.lock(run.id)
        if fresh is None or fresh.status not in REPLAYABLE:
            continue
        await replay(tx, fresh, start, None, now, fx)
        replayed.append(run.id)
    return replayed


async def replay(tx: Tx, run: ChildRow, start: str, input_json: str | None, now: float,
                 fx: Effects) -> None:
    """Run a failed, cancelled or timed-out run again: from its failed step (the memo of
    the steps that succeeded is kept, they do not run again) or from the start (with the
    same or a new input). The earlier attempt stays in the run's history. A replayed
    workflow run goes on the transaction's worklist, to start its tasks again."""
    if run.status not in REPLAYABLE:
        raise Conflict(f"run {run.id} is {run.status}; only failed, cancelled or timed-out "
                       f"runs can be replayed", "id")
    memo = (await tx.steps.memo([run.id]))[run.id]
    redo = [m.step_id for m in memo if start == "start" or not _succeeded(m)]
    history = json.loads(run.history_json or "[]")
    history.append({
        "replayed_at": now, "from": start, "status": run.status, "attempt": run.attempt,
        "error": json.loads(run.error_json) if run.error_json else None,
        "started_at": run.started_at, "ended_at": run.ended_at,
        "steps": [_step_view(m) for m in memo if m.step_id in redo],
    })
    await tx.steps.forget(run.id, None if start == "start" else redo)
    info = await fx.registry.get(run.function)
    # the run's deadlines start again, as for a new run (see ingest.create_runs)
    timeout, queue_timeout = info.timeouts_for(run.task) if info else (None, None)
    timeout_at, start_timeout_at = deadline(now, timeout), deadline(now, queue_timeout)
    workflow = info is not None and info.kind == "workflow" and run.task is None
    await tx.runs.reset(
        run.id, p.RunStatus.RUNNING if workflow else p.RunStatus.QUEUED, input_json,
        js(history), timeout_at, start_timeout_at)
    fx.deadline_at(timeout_at)
    fx.deadline_at(start_timeout_at)
    if info is not None and run.task is None:
        await tx.waits.remove([run.id])
        await tx.waits.add(cancel_waits_for(run.id, info.config.get("cancel_on", []),
                                             input_json or run.input_json, run.event_json, now))
    if workflow:
        assert info is not None
        on_failure = on_failure_task(info.config)
        for ch in await tx.runs.children_of(run.id):
            if not ch.parent_step or "#" in ch.parent_step:
                continue
            if ch.parent_step == on_failure:  # it runs again if the replay fails again
                await tx.runs.detach_task(ch.id, f"{ch.parent_step}#{len(history)}")
            elif start == "start" or ch.status in REPLAYABLE:
                # the task runs again: as a new task run (from the start), or replayed
                if start == "start":
                    await tx.runs.detach_task(ch.id, f"{ch.parent_step}#{len(history)}")
                else:
                    await replay(tx, ch, "failed_step", None, now, fx)
        fx.advance_later(run.id, now)
    else:
        # new claim numbers, so no answer to a call made before the replay can pass
        await tx.queue.schedule(run.id, now, claims=int(now * 1000), flow=concurrency.queue_flow(
            info, run.task, input_json or run.input_json, run.event_json, run.priority))
        fx.wake = True


def _succeeded(m: StepRow) -> bool:
    if m.status != p.StepStatus.COMPLETED:
        return False
    if m.kind == p.MemoKind.CHILDREN and m.output_json:
        return all(r.get("status") == "completed" for r in json.loads(m.output_json))
    return True


def _step_view(m: StepRow) -> dict[str, Any]:
    return {"id": m.step_id, "kind": m.kind, "status": m.status, "attempts": m.attempts,
            "error": json.loads(m.error_json) if m.error_json else None}
