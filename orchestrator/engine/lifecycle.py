"""Ending runs, and what follows: parents woken with their children's results, workflows
to advance put on the transaction's worklist, descendants cancelled. Called inside a
transaction the caller holds; ``hub.Hub.transact`` drains the worklist before it commits."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.registry import Registry
from orchestrator.engine.tracing import EndedRun
from orchestrator.store import ChildRow, RunCore, StepInsert, Tx
from sdk import protocol as p

log = logging.getLogger("orchestrator.lifecycle")

SOON = 1.0
"""Work due within this many seconds is not told to the other replicas when this one has
room for it: its own dispatcher, woken at once, claims it first (``Hub.share``)."""


@dataclass
class Effects:
    """What a transaction did that matters once it commits, and what it may use."""

    registry: Registry
    lease: Lease | None = None
    ended: list[str] = field(default_factory=list)
    """Runs ended: their queue rows and waits are deleted before the commit."""
    wake: bool = False
    to_advance: dict[str, float] = field(default_factory=dict)
    """The worklist: workflow runs to advance before the commit (a task of theirs ended,
    they were created or replayed), in the order first added, with the time they were
    added at (the ``now`` their advance uses)."""
    deadline: float | None = None
    """The earliest run deadline (timeout) this transaction set."""
    due: float | None = None
    """The earliest time a queue row this transaction scheduled falls due."""
    due_later: float | None = None
    """The earliest of those times at least ``SOON`` seconds ahead (when scheduled): what
    other replicas hear of even when this one will claim what falls due sooner."""
    started: list[str] = field(default_factory=list)
    """The functions of the runs created (one entry per run), counted once it commits."""
    finished: list[tuple[str, str]] = field(default_factory=list)
    """(function, status) of each run ended, counted once it commits."""
    steps: list[tuple[str, str]] = field(default_factory=list)
    """(function, status) of each step an answer recorded, counted once it commits."""
    tracing: bool = False
    """Traces are on: collect what their spans need below (``tracing.Tracing``)."""
    traced_steps: list[tuple[str, StepInsert]] = field(default_factory=list)
    """(run id, row) of each step an answer recorded, emitted as spans once it commits."""
    traced_runs: list[EndedRun] = field(default_factory=list)
    """Each run ended, emitted as its run's span once it commits."""
    to_wake: dict[str, float] = field(default_factory=dict)
    """Waiting runs to wake (their wait resolved, their children gathered), with when:
    claimed by this transaction if the dispatcher has room, else made due
    (``wake_runs``, once the transaction's work is done)."""

    def wake_run(self, run_id: str, now: float) -> None:
        self.to_wake.setdefault(run_id, now)

    def due_at(self, t: float) -> None:
        if self.due is None or t < self.due:
            self.due = t
        if (self.due_later is None or t < self.due_later) and t >= time.time() + SOON:
            self.due_later = t

    def deadline_at(self, t: float | None) -> None:
        if t is not None and (self.deadline is None or t < self.deadline):
            self.deadline = t

    def advance_later(self, wf_id: str, now: float) -> None:
        """Put a workflow run on the worklist (once: advancing it is idempotent)."""
        self.to_advance.setdefault(wf_id, now)

    def next_to_advance(self) -> tuple[str, float] | None:
        """Take the first workflow run off the worklist (None: it is empty)."""
        if not self.to_advance:
            return None
        wf_id = next(iter(self.to_advance))
        return wf_id, self.to_advance.pop(wf_id)


def js(value: Any) -> str:
    return p.dumps(value).decode()


def opt_js(value: Any) -> str | None:
    return None if value is None else js(value)


def memo_row(
    rid: str, op: Mapping[str, Any], kind: p.MemoKind, output_json: str | None,
    started: float | None, ended: float, deadline: float | None = None,
) -> StepInsert:
    """The memo row of an op the orchestrator itself resolves (a sleep, a wait's outcome,
    children started or gathered)."""
    return {
        "run_id": rid, "step_id": op["id"], "seq": op["seq"], "name": op["name"],
        "kind": kind, "status": p.StepStatus.COMPLETED, "attempts": 0,
        "output_json": output_json, "error_json": None,
        "started_at": started, "ended_at": ended, "deadline_at": deadline,
    }


async def end_run(
    tx: Tx, run: RunCore, status: str, output_json: str | None, error_json: str | None,
    now: float, fx: Effects,
) -> None:
    """End a run. If its parent waits for it and it was the last child, record the
    children's results in the parent's memo and wake it; if it is a workflow's task, put
    the workflow on the worklist. Ending a run that has already ended changes nothing."""
    if not await tx.runs.finish(run.id, status, output_json, error_json, now):
        return
    # its queue row, a pending wait and its cancel_on waits go when the transaction's
    # work is done (``Hub.transact``): one statement for all the runs it ended
    fx.ended.append(run.id)
    fx.finished.append((run.function, status))
    if fx.tracing:
        fx.traced_runs.append(EndedRun(run.id, run.function, status, run.parent_id, run.task,
                                       getattr(run, "created_at", None), now, error_json))
    if run.parent_id and run.parent_waits:
        left = await tx.runs.child_done(run.parent_id)
        if left == 0:
            await gather(tx, run.parent_id, now, fx)
    elif run.parent_id and run.task:
        fx.advance_later(run.parent_id, now)


def outcome(run: ChildRow) -> dict[str, Any]:
    """An ended run's ``output`` and ``error`` (those it has), decoded: the keyword
    arguments of the protocol's result builders (``p.child_result``, ``p.parent_result``)."""
    kw: dict[str, Any] = {}
    if run.output_json is not None:
        kw["output"] = json.loads(run.output_json)
    if run.error_json is not None:
        kw["error"] = json.loads(run.error_json)
    return kw


async def gather(tx: Tx, parent_id: str, now: float, fx: Effects) -> None:
    parent = await tx.runs.get(parent_id)
    if parent is None or parent.status in p.TERMINAL:
        return
    waiting = json.loads(parent.waiting_json or "{}")
    step = waiting.get("step")
    if not step:
        log.error("run %s has no children step to gather into", parent_id,
                  extra={"run_id": parent_id, "function": parent.function})
        return
    results = [p.child_result(ch.id, ch.function, ch.status, **outcome(ch))
               for ch in await tx.runs.children_of(parent_id, step)]
    op = {"id": step, "seq": waiting["seq"], "name": waiting["name"]}
    await tx.steps.record([memo_row(parent_id, op, p.MemoKind.CHILDREN, js(results), now, now)])
    await tx.runs.set_waiting(parent_id, None)
    fx.wake_run(parent_id, now)


async def wake_runs(tx: Tx, fx: Effects) -> None:
    """Wake the runs the transaction resolved the waits of (``Effects.to_wake``), after
    all its work (their memo is complete). Each is claimed here for this replica's
    dispatcher while it has room (``Effects.lease``): delivered once the transaction
    commits, with no claim transaction and no wake-up in between, as a run created
    already claimed is. Otherwise (no room, a run in a concurrency group, one in flight)
    its queue row is made due and the dispatcher claims it."""
    woken = [(rid, t) for rid, t in fx.to_wake.items() if rid not in fx.ended]
    fx.to_wake.clear()
    lease = fx.lease
    for rid, now in woken:
        row = None
        if lease is not None and lease.room > 0:
            row = await tx.queue.wake_claimed(rid, now, lease.owner, lease.until)
        if row is None:
            await tx.queue.wake(rid, now)
            fx.wake = True
            continue
        assert lease is not None
        run = (await tx.runs.get_many([rid])).get(rid)
        if run is None:  # (cannot be: it waited) the row's lease expires, nothing else
            continue
        since = lease.tails.offer({rid: run}, [rid]) if lease.tails is not None else {}
        memo = (await tx.steps.memo([rid], since))[rid]
        lease.room -= 1
        lease.claims.append(Claim(rid, row.claims, row.delivery_failures,
                                  row.first_failure_at, run,
                                  await fx.registry.get(run.function), memo,
                                  since.get(rid, 0)))


async def cancel_run(
    tx: Tx, run: RunCore, status: str, error: Mapping[str, Any], now: float, fx: Effects
) -> list[str]:
    """End ``run`` with ``status`` (cancelled, timed_out) and cancel its unfinished
    descendants. Its pending work, sleeps and waits are dropped; an answer in flight
    will find its lease gone and be discarded. Returns the ids ended."""
    descendants = await tx.runs.active_descendants(run.id)
    await end_run(tx, run, status, None, js(dict(error)), now, fx)
    ended = [run.id]
    if descendants:
        rows = await tx.runs.get_many(descendants)
        cause = {"type": "Cancelled", "message": f"its ancestor {run.id} ended {status}"}
        for rid in descendants:  # parents before children: gathers into ended parents stop
            child = rows.get(rid)
            if child is not None and child.status not in p.TERMINAL:
                await end_run(tx, child, p.RunStatus.CANCELLED, None, js(cause), now, fx)
                ended.append(rid)
    return ended
