"""What starts or wakes runs: new runs (REST, events, children) and incoming events.

Functions here work inside a transaction the caller holds, so a reducer can apply an
answer's events and children atomically with the rest of the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.claim import Lease
from orchestrator.ids import new_id
from orchestrator.store import Tx
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


@dataclass
class IngestResult:
    event_ids: list[str] = field(default_factory=list)
    run_ids: list[list[str]] = field(default_factory=list)
    woke: list[str] = field(default_factory=list)


async def create_runs(
    tx: Tx, specs: Sequence[NewRun], now: float, lease: Lease | None = None
) -> list[str]:
    """Insert runs with their queue rows; an idempotency key already used returns its run.

    With a ``lease``, runs are created already claimed (as many as it has room for).
    """
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    queue_rows: list[dict[str, Any]] = []
    for s in specs:
        if s.idempotency_key is not None:
            existing = await tx.runs.by_idempotency(s.function, s.idempotency_key)
            if existing is not None:
                ids.append(existing)
                continue
        rid = new_id()
        ids.append(rid)
        row = {
            "id": rid, "function": s.function, "status": "queued", "attempt": 0,
            "input_json": s.input_json, "event_json": s.event_json,
            "idempotency_key": s.idempotency_key, "parent_id": s.parent_id,
            "parent_step": s.parent_step, "child_index": s.child_index,
            "parent_waits": s.parent_waits, "pending_children": 0, "created_at": now,
            "started_at": None, "waiting_json": None,
        }
        claimed = lease is not None and lease.take(row)
        if claimed:
            row["status"] = "running"
            row["started_at"] = now
        rows.append(row)
        queue_rows.append({
            "run_id": rid, "due_at": now, "claims": 1 if claimed else 0,
            "lease_owner": lease.owner if claimed and lease else None,
            "lease_expires_at": lease.until if claimed and lease else None,
        })
    await tx.runs.insert_many(rows)
    await tx.queue.add_many(queue_rows)
    return ids


def normalize_event(ev: Mapping[str, Any], now: float) -> dict[str, Any]:
    """An event as stored and delivered: {id, name, data, ts}."""
    return {
        "id": str(ev.get("id") or new_id()),
        "name": ev["name"],
        "data": ev.get("data") if ev.get("data") is not None else {},
        "ts": float(ev.get("ts") or now),
    }


async def ingest_events(
    tx: Tx, events: Sequence[Mapping[str, Any]], now: float, lease: Lease | None = None
) -> IngestResult:
    """Store events (a known id is a duplicate: accepted, ignored), start the runs they
    trigger, and resume the runs waiting for them."""
    evs = [normalize_event(e, now) for e in events]
    out = IngestResult(event_ids=[e["id"] for e in evs])
    encoded = {e["id"]: p.dumps(e).decode() for e in evs}
    new = await tx.events.insert_new([
        {"id": e["id"], "name": e["name"], "data_json": p.dumps(e["data"]).decode(),
         "ts": e["ts"], "run_ids_json": "[]"}
        for e in evs
    ])
    earlier = await tx.events.run_ids([e["id"] for e in evs if e["id"] not in new])
    fresh = [e for e in evs if e["id"] in new]
    triggered = await tx.apps.triggered_by(sorted({e["name"] for e in fresh}))
    run_ids: dict[str, list[str]] = {}
    seen: set[str] = set()
    for e in evs:
        if e["id"] in seen:  # repeated within this batch
            continue
        if e["id"] not in new:  # a duplicate of an earlier event: accepted, ignored
            run_ids[e["id"]] = json.loads(earlier.get(e["id"], "[]"))
            continue
        seen.add(e["id"])
        data_json = p.dumps(e["data"]).decode()
        specs = [NewRun(fn, data_json, encoded[e["id"]]) for fn in triggered.get(e["name"], [])]
        run_ids[e["id"]] = await create_runs(tx, specs, now, lease)
        for w in await tx.waits.take_matching(e):
            await resolve_wait(tx, w.run_id, w.step_id, w.seq, w.name, encoded[e["id"]], now)
            await tx.queue.wake(w.run_id, now)
            out.woke.append(w.run_id)
    await tx.events.set_run_ids(
        [{"eid": eid, "run_ids_json": json.dumps(r)} for eid, r in run_ids.items()
         if eid in new]
    )
    out.run_ids = [run_ids[e["id"]] for e in evs]
    return out


async def resolve_wait(
    tx: Tx, run_id: str, step_id: str, seq: int, name: str, event_json: str | None, now: float
) -> None:
    """Record a wait's outcome (the event, or null on timeout) in the run's memo."""
    await tx.steps.record([{
        "run_id": run_id, "step_id": step_id, "seq": seq, "name": name,
        "kind": p.MemoKind.WAIT, "status": p.StepStatus.COMPLETED, "attempts": 0,
        "output_json": event_json or "null", "error_json": None,
        "started_at": None, "ended_at": now,
    }])
    await tx.runs.set_waiting(run_id, None)
