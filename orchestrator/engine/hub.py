"""The transaction unit: engine work runs in ``Hub.transact``, which hands it the
transaction's ``Effects``, advances the workflow runs the work put on the worklist
before the commit, and settles the effects once it has committed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.dag import advance_worklist
from orchestrator.engine.lifecycle import Effects, wake_runs
from orchestrator.engine.metrics import Metrics
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry
from orchestrator.engine.tracing import OFF, Tracing
from orchestrator.store import Store, Tx

T = TypeVar("T")



class Handoff(Protocol):
    """Where runs created already claimed go once their transaction commits."""

    def lease(self) -> Lease | None: ...

    def adopt(self, claims: list[Claim]) -> None: ...

    def applied(self, claims: list[Claim]) -> None: ...


class Hub:
    """Runs engine work in a transaction and settles its effects after the commit: runs
    created already claimed go to the dispatcher, long-pollers learn which runs ended,
    the dispatcher wakes if work fell due, the scheduler learns of new deadlines.

    The composition root (``Engine``) wires the dispatcher and the scheduler in
    (``wire``); until then runs are not created claimed and deadlines wake nobody."""

    def __init__(self, store: Store, registry: Registry, notifier: Notifier,
                 metrics: Metrics | None = None, tracing: Tracing = OFF) -> None:
        self.store = store
        self.metrics = metrics
        self.tracing = tracing
        self.registry = registry
        self.notifier = notifier
        self.handoff: Handoff | None = None
        self.timers: Callable[[float], None] | None = None
        """Told of new run deadlines (the scheduler), so it wakes for them in time."""

    def wire(self, handoff: Handoff, timers: Callable[[float], None]) -> None:
        self.handoff = handoff
        self.timers = timers

    async def transact(self, work: Callable[[Tx, Effects], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction (retried when the database asks), advance
        the workflow runs it put on the worklist, then settle the effects of the attempt
        that committed."""
        fx: Effects | None = None

        async def attempt(tx: Tx) -> T:
            nonlocal fx
            fx = self.effects()
            result = await work(tx, fx)
            await advance_worklist(tx, fx)
            if fx.to_wake:
                await wake_runs(tx, fx)
            if fx.ended:  # the queue rows and waits of the runs ended, in one go
                await tx.queue.remove(fx.ended)
                await tx.waits.remove(fx.ended)
            return result

        result = await self.store.transact(attempt)
        assert fx is not None
        self.settle(fx)
        return result

    def effects(self) -> Effects:
        return Effects(self.registry, self.handoff.lease() if self.handoff else None,
                       tracing=self.tracing.enabled)

    def settle(self, fx: Effects) -> None:
        leased = fx.lease.until if fx.lease is not None and fx.lease.claims else None
        if fx.lease is not None and fx.lease.claims and self.handoff is not None:
            self.handoff.adopt(fx.lease.claims)
            fx.lease.claims = []
        if fx.ended:
            self.notifier.runs_ended(fx.ended)
        if self.metrics is not None and (fx.started or fx.finished or fx.steps):
            self.metrics.committed(fx.started, fx.finished, fx.steps)
        if fx.traced_steps or fx.traced_runs:
            self.tracing.committed(fx.traced_steps, fx.traced_runs)
        if fx.wake:
            self.notifier.wake_dispatcher()
        elif fx.due is not None:
            self.notifier.due_at(fx.due)
        if fx.deadline is not None and self.timers is not None:
            self.timers(fx.deadline)
        if self.notifier.broadcast is not None:
            self.share(fx, leased)

    def share(self, fx: Effects, leased: float | None) -> None:
        """Tell the other replicas (one notification at most) what they may have to act
        on: work due later (``lifecycle.SOON``), or now if this replica has no room for
        it; the leases of runs created already claimed (should this replica die, another
        takes them over once they expire); a new deadline."""
        if self.handoff is not None and self.handoff.lease() is not None:
            due = fx.due_later  # what falls due sooner, this replica's dispatcher claims
        else:
            due = time.time() if fx.wake else fx.due
        if leased is not None and (due is None or leased < due):
            due = leased
        self.notifier.tell(due, fx.deadline)
