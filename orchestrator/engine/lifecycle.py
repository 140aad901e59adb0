"""Ending runs, and what follows: parents woken with their children's results, workflows
advanced, descendants cancelled. Called inside a transaction the caller holds."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry
from orchestrator.store import Store, Tx
from sdk import protocol as p

log = logging.getLogger("orchestrator.lifecycle")
T = TypeVar("T")


@dataclass
class Effects:
    """What a transaction did that matters once it commits, and what it may use."""

    registry: Registry
    lease: Lease | None = None
    ended: list[str] = field(default_factory=list)
    """Runs ended: their queue rows and waits are deleted before the commit."""
    wake: bool = False
    advancing: set[str] = field(default_factory=set)
    """Workflow runs being advanced in this transaction (guards re-entry)."""
    deadline: float | None = None
    """The earliest run deadline (timeout) this transaction set."""
    due: float | None = None
    """The earliest time a queue row this transaction scheduled falls due."""

    def due_at(self, t: float) -> None:
        if self.due is None or t < self.due:
            self.due = t

    def deadline_at(self, t: float | None) -> None:
        if t is not None and (self.deadline is None or t < self.deadline):
            self.deadline = t


class Handoff(Protocol):
    """Where runs created already claimed go once their transaction commits."""

    def lease(self) -> Lease | None: ...

    def adopt(self, claims: list[Claim]) -> None: ...

    def applied(self, claims: list[Claim]) -> None: ...


class Hub:
    """Hands out the ``Effects`` of a transaction, and settles them after it commits:
    runs created already claimed go to the dispatcher, long-pollers learn which runs
    ended, the dispatcher wakes if work fell due."""

    def __init__(self, store: Store, registry: Registry, notifier: Notifier) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self.handoff: Handoff | None = None
        self.timers: Callable[[float], None] | None = None
        """Told of new run deadlines (the scheduler), so it wakes for them in time."""

    async def transact(self, work: Callable[[Tx, Effects], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction (retried when the database asks), then
        settle the effects of the attempt that committed."""
        fx: Effects | None = None

        async def attempt(tx: Tx) -> T:
            nonlocal fx
            fx = self.effects()
            result = await work(tx, fx)
            if fx.ended:  # the queue rows and waits of the runs ended, in one go
                await tx.queue.remove(fx.ended)
                await tx.waits.remove(fx.ended)
            return result

        result = await self.store.transact(attempt)
        assert fx is not None
        self.settle(fx)
        return result

    def effects(self) -> Effects:
        return Effects(self.registry, self.handoff.lease() if self.handoff else None)

    def settle(self, fx: Effects) -> None:
        if fx.lease is not None and fx.lease.claims and self.handoff is not None:
            self.handoff.adopt(fx.lease.claims)
            fx.lease.claims = []
        if fx.ended:
            self.notifier.runs_ended(fx.ended)
        if fx.wake:
            self.notifier.wake_dispatcher()
        elif fx.due is not None:
            self.notifier.due_at(fx.due)
        if fx.deadline is not None and self.timers is not None:
            self.timers(fx.deadline)


def js(value: Any) -> str:
    return p.dumps(value).decode()


def opt_js(value: Any) -> str | None:
    return None if value is None else js(value)


def memo_row(
    rid: str, op: Mapping[str, Any], kind: p.MemoKind, output_json: str | None,
    started: float | None, ended: float,
) -> dict[str, Any]:
    return {
        "run_id": rid, "step_id": op["id"], "seq": op["seq"], "name": op["name"],
        "kind": kind, "status": p.StepStatus.COMPLETED, "attempts": 0,
        "output_json": output_json, "error_json": None,
        "started_at": started, "ended_at": ended,
    }


async def end_run(
    tx: Tx, run: Any, status: str, output_json: str | None, error_json: str | None,
    now: float, fx: Effects,
) -> None:
    """End a run. If its parent waits for it and it was the last child, record the
    children's results in the parent's memo and wake it; if it is a workflow's task,
    advance the workflow. Ending a run that has already ended changes nothing."""
    if not await tx.runs.finish(run.id, status, output_json, error_json, now):
        return
    # its queue row, a pending wait and its cancel_on waits go when the transaction's
    # work is done (``Hub.transact``): one statement for all the runs it ended
    fx.ended.append(run.id)
    if run.parent_id and run.parent_waits:
        left = await tx.runs.child_done(run.parent_id)
        if left == 0:
            await gather(tx, run.parent_id, now)
            fx.wake = True
    elif run.parent_id and run.task:
        from orchestrator.engine.dag import advance

        await advance(tx, run.parent_id, now, fx)


async def gather(tx: Tx, parent_id: str, now: float) -> None:
    parent = await tx.runs.get(parent_id)
    if parent is None or parent.status in p.TERMINAL:
        return
    waiting = json.loads(parent.waiting_json or "{}")
    step = waiting.get("step")
    if not step:
        log.error("run %s has no children step to gather into", parent_id)
        return
    results = []
    for ch in await tx.runs.children_of(parent_id, step):
        r: dict[str, Any] = {"run_id": ch.id, "function": ch.function, "status": ch.status}
        if ch.output_json is not None:
            r["output"] = json.loads(ch.output_json)
        if ch.error_json is not None:
            r["error"] = json.loads(ch.error_json)
        results.append(r)
    op = {"id": step, "seq": waiting["seq"], "name": waiting["name"]}
    await tx.steps.record([memo_row(parent_id, op, p.MemoKind.CHILDREN, js(results), now, now)])
    await tx.runs.set_waiting(parent_id, None)
    await tx.queue.wake(parent_id, now)


async def cancel_run(
    tx: Tx, run: Any, status: str, error: Mapping[str, Any], now: float, fx: Effects
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
