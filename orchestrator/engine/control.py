"""Control of runs: replay (cancel lives in ``lifecycle``). Inside a caller's transaction."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.engine.ingest import _cancel_waits, _deadline
from orchestrator.engine.lifecycle import Effects, js
from orchestrator.errors import Conflict
from orchestrator.store import Tx
from sdk import protocol as p

REPLAYABLE = (p.RunStatus.FAILED, p.RunStatus.CANCELLED, p.RunStatus.TIMED_OUT)
FROM = ("failed_step", "start")


async def replay(tx: Tx, run: Any, start: str, input_json: str | None, now: float,
                 fx: Effects) -> None:
    """Run a failed, cancelled or timed-out run again: from its failed step (the memo of
    the steps that succeeded is kept, they do not run again) or from the start (with the
    same or a new input). The earlier attempt stays in the run's history."""
    from orchestrator.engine.dag import advance

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
    timeout_at, start_timeout_at = _deadline(now, timeout), _deadline(now, queue_timeout)
    workflow = info is not None and info.kind == "workflow" and run.task is None
    await tx.runs.reset(
        run.id, p.RunStatus.RUNNING if workflow else p.RunStatus.QUEUED, input_json,
        js(history), timeout_at, start_timeout_at)
    fx.deadline_at(timeout_at)
    fx.deadline_at(start_timeout_at)
    if info is not None and run.task is None:
        await tx.waits.remove([run.id])
        await tx.waits.add(_cancel_waits(run.id, info.config.get("cancel_on", []),
                                         input_json or run.input_json, run.event_json, now))
    if workflow:
        assert info is not None
        on_failure = (info.config.get("on_failure") or {}).get("name")
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
        await advance(tx, run.id, now, fx)
    else:
        # new claim numbers, so no answer to a call made before the replay can pass
        await tx.queue.schedule(run.id, now, claims=int(now * 1000))
        fx.wake = True


def _succeeded(m: Any) -> bool:
    if m.status != p.StepStatus.COMPLETED:
        return False
    if m.kind == p.MemoKind.CHILDREN and m.output_json:
        return all(r.get("status") == "completed" for r in json.loads(m.output_json))
    return True


def _step_view(m: Any) -> dict[str, Any]:
    return {"id": m.step_id, "kind": m.kind, "status": m.status, "attempts": m.attempts,
            "error": json.loads(m.error_json) if m.error_json else None}
