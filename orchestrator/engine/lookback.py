"""``wait_for_event(..., lookback=T)``: an event stored up to ``T`` seconds before the
wait is recorded satisfies it at once, instead of the run parking for a later one.

The lookup is bounded: it reads the newest ``LOOKBACK_CANDIDATES`` events of the wait's
name inside the window, a range of the index ``ix_events_name_ts`` (never the older
events), and takes the earliest one that matches as ``WaitsRepo.take_matching`` would
match it (``protocol.event_match_key``), skipping events the run's earlier waits already
received. Under PostgreSQL's READ COMMITTED an event stored concurrently with the wait
would otherwise be seen by neither side; a per-name advisory lock closes that gap
(``guard_events`` on the events' side, shared; exclusive here): docs/flow-control.md,
"Wait lookback".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from orchestrator.store import StepRow, Tx
from sdk import protocol as p

LOOKBACK_CANDIDATES = 1000
"""The most events one lookback reads (the newest in its window): with more of the name
inside the window, only these are considered."""


class RecordedWait(NamedTuple):
    """A wait satisfied by a stored event without a ``waits`` row (``ingest.resolve_wait``
    takes it as it takes a removed one)."""

    run_id: str
    step_id: str
    seq: int
    name: str
    created_at: float
    expires_at: float | None


async def guard_events(tx: Tx, names: Iterable[str]) -> None:
    """Before events of ``names`` look for their waits: a lookback of the same name in
    another transaction either committed before (its wait is seen) or waits for this one
    to commit (it sees the events)."""
    await tx.events.lock_names(list(names), shared=True)


def _consumed(memo: list[StepRow]) -> set[str]:
    """The ids of the events the run's earlier waits received."""
    out: set[str] = set()
    for row in memo:
        if row.kind == p.MemoKind.WAIT and row.output_json:
            ev = json.loads(row.output_json)
            if isinstance(ev, dict) and isinstance(ev.get("id"), str):
                out.add(ev["id"])
    return out


async def recent_event(tx: Tx, run_id: str, op: p.WaitEventOp, now: float) -> str | None:
    """The earliest stored event that satisfies the wait ``op`` within its lookback,
    encoded as ``ingest`` delivers events (``{id, name, data, ts}``); None without a
    lookback or a match."""
    lookback = op.get("lookback")
    if not lookback:
        return None
    name = op["event"]
    match: dict[str, Any] = dict(op.get("match") or {})
    await tx.events.lock_names([name], shared=False)
    rows = await tx.events.recent(name, now - float(lookback), LOOKBACK_CANDIDATES)
    if not rows:
        return None
    fields, want = p.match_fields(match), p.match_key(name, match)
    used: set[str] | None = None
    for r in reversed(rows):  # earliest first
        ev = {"id": r.id, "name": r.name, "data": json.loads(r.data_json), "ts": r.ts}
        if p.event_match_key(ev, fields) != want:
            continue
        if used is None:
            used = _consumed((await tx.steps.memo([run_id]))[run_id])
        if r.id not in used:
            return p.dumps(ev).decode()
    return None
