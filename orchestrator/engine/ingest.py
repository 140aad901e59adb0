"""What starts or wakes runs: new runs (REST, events, schedules, children, workflow
tasks) and incoming events.

Functions here work inside a transaction the caller holds, so a reducer can apply an
answer's events and children atomically with the rest of the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine import concurrency, flow
from orchestrator.engine.lifecycle import Effects, cancel_run, memo_row
from orchestrator.engine.lookback import guard_events
from orchestrator.ids import new_id
from orchestrator.store import QueueInsert, RunInsert, TakenWait, Tx, WaitInsert
from sdk import protocol as p


@dataclass
class NewRun:
    function: str
    input_json: str
    event_json: str | None = None
    idempotency_key: str | None = None
    parent_id: str | None = None
    parent_step: str | None = None
    child_index: int = 0
    parent_waits: bool = False
    task: str | None = None
    parents_json: str | None = None
    skipped: bool = False
    priority: int | None = None
    """Given by the trigger (checked: 1-10); else declared, else ``inherited``."""
    inherited_priority: int | None = None
    """The parent run's (a child's, a workflow task run's)."""


@dataclass
class IngestResult:
    event_ids: list[str] = field(default_factory=list)
    run_ids: list[list[str]] = field(default_factory=list)
    #: Parallel to ``event_ids``: whether the event's id was known (sent before, or earlier
    #: in the same batch), so that the event was accepted and ignored.
    duplicate: list[bool] = field(default_factory=list)


def deadline(now: float, seconds: Any) -> float | None:
    """The time ``seconds`` (a timeout, if positive) after ``now``; None without one."""
    return now + float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None


async def create_runs(tx: Tx, specs: Sequence[NewRun], now: float, fx: Effects) -> list[str]:
    """Insert runs with their queue rows; an idempotency key already used returns its run.

    With a lease in ``fx``, runs are created already claimed (as many as it has room
    for). A workflow run has no queue row of its own: its first tasks start at once (unless
a control delays its start: then it is queued until its row is claimed).
    Runs of functions that declare ``cancel_on`` events get their cancel waits. A new
    workflow run goes on the transaction's worklist (its first tasks start before the
    commit, ``hub.Hub.transact``).
    """
    infos = await fx.registry.get_many({s.function for s in specs})
    ids: list[str] = []
    rows: list[RunInsert] = []
    queue_rows: list[QueueInsert] = []
    workflows: list[str] = []
    cancel_waits: list[WaitInsert] = []
    gate = flow.Gate(tx, now, fx)
    await flow.lock_keys(tx, [(s.function, s.input_json, s.event_json) for s in specs
                              if s.parent_id is None and s.task is None and not s.skipped],
                         infos)
    for s in specs:
        if s.idempotency_key is not None:
            existing = await tx.runs.by_idempotency(s.function, s.idempotency_key)
            if existing is not None:
                ids.append(existing)
                continue
        rid = new_id()
        ids.append(rid)
        info = infos.get(s.function)
        timeout, queue_timeout = info.timeouts_for(s.task) if info else (None, None)
        timeout_at, start_timeout_at = deadline(now, timeout), deadline(now, queue_timeout)
        row: RunInsert = {
            "id": rid, "function": s.function, "status": "queued", "attempt": 0,
            "input_json": s.input_json, "event_json": s.event_json,
            "idempotency_key": s.idempotency_key, "parent_id": s.parent_id,
            "parent_step": s.parent_step, "child_index": s.child_index,
            "parent_waits": s.parent_waits, "pending_children": 0, "created_at": now,
            "started_at": None, "waiting_json": None, "task": s.task,
            "parents_json": s.parents_json, "timeout_at": timeout_at,
            "start_timeout_at": start_timeout_at,
        }
        qf = concurrency.queue_flow(info, s.task, s.input_json, s.event_json, s.priority,
                                    s.inherited_priority)
        row["priority"] = qf.priority
        # flow control (engine/flow.py): runs started by a trigger only
        fc = flow.controls(info) if s.parent_id is None and s.task is None else None
        decision = (await gate.admit(fc, info, row)
                    if fc is not None and info is not None and not s.skipped else None)
        if decision is not None and decision.merged is not None:
            ids[-1] = decision.merged  # folded into a pending run (debounce, batch)
            continue
        if decision is not None and decision.error is not None:
            flow.skipped(row, decision.error, now)
            gate.track(row, None, None)
        rows.append(row)
        if row["status"] == p.RunStatus.SKIPPED:
            continue
        if s.skipped:
            row.update({"status": p.RunStatus.SKIPPED, "started_at": now, "ended_at": now,
                        "timeout_at": None, "start_timeout_at": None})
            continue
        fx.deadline_at(timeout_at)
        fx.deadline_at(start_timeout_at)
        if (info is not None and info.kind == "workflow" and s.task is None
                and (decision is None or decision.claimable)):
            row.update({"status": p.RunStatus.RUNNING, "started_at": now, "start_timeout_at": None})
            workflows.append(rid)
            if decision is not None:
                gate.track(row, None, None)
        else:
            # a workflow run whose start a control delays (throttle, debounce, batch) gets
            # a queue row like a task's: when claimed, its first tasks start
            # (``Dispatcher._start_workflow``)
            # a run in a concurrency group is never created claimed: the limited claim
            # counts its group's slots (engine/concurrency.py)
            due = now if decision is None or decision.due is None else decision.due
            claimed = (qf.ckey1 is None and (decision is None or decision.claimable)
                       and fx.lease is not None and fx.lease.take(row, info))
            if claimed:
                row.update({"status": p.RunStatus.RUNNING, "started_at": now})
            elif due <= now:
                fx.wake = True  # a queue row due now: the dispatcher claims it
            else:
                fx.due_at(due)
            queue_rows.append({
                "run_id": rid, "due_at": due, "claims": 1 if claimed else 0,
                "lease_owner": fx.lease.owner if claimed and fx.lease else None,
                "lease_expires_at": fx.lease.until if claimed and fx.lease else None,
                "priority": qf.priority, "ckey1": qf.ckey1, "ckey2": qf.ckey2,
            })
            if decision is not None:
                gate.track(row, queue_rows[-1], decision.events)
        if info is not None and s.task is None:
            cancel_waits += cancel_waits_for(rid, info.config.get("cancel_on", []),
                                              s.input_json, s.event_json, now)
    await tx.runs.insert_many([r for r in rows if r["idempotency_key"] is None])
    lost: set[str] = set()
    for r in rows:
        if r["idempotency_key"] is not None and await tx.runs.insert_keyed(r) is None:
            # a concurrent transaction took the key since we looked: its run is the run
            lost.add(r["id"])
            ids[ids.index(r["id"])] = str(
                await tx.runs.by_idempotency(r["function"], r["idempotency_key"]))
    if gate.dropped:  # cancelled by a later trigger of this call (singleton "cancel")
        queue_rows = [q for q in queue_rows if q["run_id"] not in gate.dropped]
        cancel_waits = [w for w in cancel_waits if w["run_id"] not in gate.dropped]
        workflows = [w for w in workflows if w not in gate.dropped]
        if fx.lease is not None:
            fx.lease.release(gate.dropped)
    if lost:
        queue_rows = [q for q in queue_rows if q["run_id"] not in lost]
        cancel_waits = [w for w in cancel_waits if w["run_id"] not in lost]
        workflows = [w for w in workflows if w not in lost]
        if fx.lease is not None:
            fx.lease.release(lost)
    await tx.queue.add_many(queue_rows)
    await tx.waits.add(cancel_waits)
    fx.started.extend(r["function"] for r in rows
                      if r["id"] not in lost and r.get("status") != p.RunStatus.SKIPPED)
    for wf in workflows:
        fx.advance_later(wf, now)
    return ids


def cancel_waits_for(rid: str, rules: list[dict[str, Any]], input_json: str,
                  event_json: str | None, now: float) -> list[WaitInsert]:
    """Waits that cancel the run: ``{"event": e, "match": {event path: run path}}``, the
    run paths read from ``{"input": ..., "event": ...}`` of the run at its creation."""
    run_view = {"input": json.loads(input_json),
                "event": json.loads(event_json) if event_json else None}
    out: list[WaitInsert] = []
    for i, rule in enumerate(rules):
        match = {}
        for ev_path, run_path in (rule.get("match") or {}).items():
            value = p.lookup(run_view, run_path)
            if value is p.MISSING or isinstance(value, dict | list):
                break  # the run lacks the value: this rule cannot match it
            match[ev_path] = value
        else:
            out.append({
                "run_id": rid, "step_id": f"cancel-on:{i}", "seq": -1, "name": "cancel_on",
                "event": rule["event"], "match_fields": p.match_fields(match),
                "match_key": p.match_key(rule["event"], match), "match_json": p.dumps(match)
                .decode(), "expires_at": None, "created_at": now, "purpose": "cancel",
            })
    return out


def normalize_event(ev: Mapping[str, Any], now: float) -> dict[str, Any]:
    """An event as stored and delivered: {id, name, data, ts}."""
    return {
        "id": str(ev.get("id") or new_id()),
        "name": ev["name"],
        "data": ev.get("data") if ev.get("data") is not None else {},
        "ts": float(ev.get("ts") or now),
    }


async def ingest_events(
    tx: Tx, events: Sequence[Mapping[str, Any]], now: float, fx: Effects
) -> IngestResult:
    """Store events (a known id is a duplicate: accepted, ignored), start the runs they
    trigger, resume the runs waiting for them, cancel the runs they cancel."""
    evs = [normalize_event(e, now) for e in events]
    out = IngestResult(event_ids=[e["id"] for e in evs])
    encoded = {e["id"]: p.dumps(e).decode() for e in evs}
    data = {e["id"]: p.dumps(e["data"]).decode() for e in evs}
    new = await tx.events.insert_new([
        {"id": e["id"], "name": e["name"], "data_json": data[e["id"]], "ts": e["ts"],
         "run_ids_json": "[]"}
        for e in evs
    ])
    earlier = await tx.events.run_ids([e["id"] for e in evs if e["id"] not in new])
    fresh = [e for e in evs if e["id"] in new]
    await guard_events(tx, {e["name"] for e in fresh})  # against a concurrent lookback
    triggered = await tx.apps.triggered_by(sorted({e["name"] for e in fresh}))
    # the flow-control keys of all these events' runs, locked in order first (engine/flow)
    infos = await fx.registry.get_many({fn for fns in triggered.values() for fn in fns})
    await flow.lock_keys(tx, [(fn, data[e["id"]], encoded[e["id"]]) for e in fresh
                              for fn in triggered.get(e["name"], [])], infos)
    run_ids: dict[str, list[str]] = {}
    seen: set[str] = set()
    for e in evs:
        out.duplicate.append(e["id"] in seen or e["id"] not in new)
        if e["id"] in seen:  # repeated within this batch
            continue
        if e["id"] not in new:  # a duplicate of an earlier event: accepted, ignored
            run_ids[e["id"]] = json.loads(earlier.get(e["id"], "[]"))
            continue
        seen.add(e["id"])
        specs = [NewRun(fn, data[e["id"]], encoded[e["id"]])
                 for fn in triggered.get(e["name"], [])]
        run_ids[e["id"]] = await create_runs(tx, specs, now, fx) if specs else []
        for w in await tx.waits.take_matching(e):
            if w.purpose == "cancel":
                run = await tx.runs.get(w.run_id)
                if run is not None and run.status not in p.TERMINAL:
                    await cancel_run(tx, run, p.RunStatus.CANCELLED, {
                        "type": "CancelledByEvent",
                        "message": f"cancelled by event {e['name']!r} ({e['id']})",
                        "event_id": e["id"]}, now, fx)
                continue
            await resolve_wait(tx, w, encoded[e["id"]], now)
            fx.wake_run(w.run_id, now)
    await tx.events.set_run_ids(
        [{"eid": eid, "run_ids_json": json.dumps(r)} for eid, r in run_ids.items()
         if eid in new]
    )
    out.run_ids = [run_ids[e["id"]] for e in evs]
    return out


async def resolve_wait(tx: Tx, w: TakenWait, event_json: str | None, now: float) -> None:
    """Record a wait's outcome (the event, or null on timeout) in the run's memo, with
    when it began and its deadline (for the run's timeline)."""
    op = {"id": w.step_id, "seq": w.seq, "name": w.name}
    await tx.steps.record([memo_row(w.run_id, op, p.MemoKind.WAIT, event_json or "null",
                                    w.created_at, now, w.expires_at)])
    await tx.runs.set_waiting(w.run_id, None)
