"""Retention: the supervised loop that deletes ended runs past their age, and old events.

A function's runs are kept for its own ``retention`` (seconds, declared with the function),
else for ``Settings.retention_days`` (0: forever); the runs of a function no longer
registered get the global age. A pass groups the functions by age and deletes in
transactions of at most ``retention_batch`` runs, yielding to the event loop between
them, until one finds fewer; then the events received before the global age, the same
way. Each transaction is short: SQLite has one writer, and runs must not wait on a sweep.

A run is deleted, with its steps, waits and queue row, once it has ended (completed,
failed, cancelled, timed_out, skipped) more than its age ago and its parent, if it has
one, has ended too or is gone: an active parent may still gather its children. Each run
is judged by its own function's age, children included. A run queued or running
(sleeping, waiting for an event or for children) is never deleted, however old.

An event is deleted once it is older than the global age, whatever became of its runs:
it did its work when it was ingested (it started its runs and resolved the waits that
existed then; no later wait can match it), and a run keeps its own copy of the event
that started it (``event_json``).

Flow control's state that says nothing any more goes too, whatever the ages: throttle and
rate-limit keys whose theoretical arrival time passed more than a minute ago (the same as
no state), and the debounce, batch and singleton slots opened that long ago whose run has
ended or is gone (``store.flow.FlowRepo.sweep``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.engine.flow import IDLE_S
from orchestrator.engine.metrics import Metrics
from orchestrator.engine.registry import Registry
from orchestrator.loops import supervise
from orchestrator.store import Store, Tx

log = logging.getLogger("orchestrator.retention")

DAY_S = 86400.0

Group = tuple[Sequence[str], float]
"""Functions sharing an age, and the end time before which their runs are deleted."""


@dataclass(frozen=True)
class Swept:
    """What one pass deleted, and in how many transactions."""

    runs: int = 0
    events: int = 0
    run_batches: int = 0
    event_batches: int = 0
    flow: int = 0
    """Flow-control rows deleted (``flow_state``, ``flow_runs``)."""


class Retention:
    def __init__(self, store: Store, registry: Registry, metrics: Metrics,
                 settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.settings = settings
        self.clock = clock

    @property
    def default_age(self) -> float | None:
        """The global age in seconds; None: keep forever."""
        return self.settings.retention_days * DAY_S or None

    async def run(self) -> None:
        await supervise("retention", self.run_once, self.store.health)

    async def run_once(self) -> None:
        """One pass of the supervised loop: sweep, then pause. A sweep that failed (the
        database away) is tried again within 2 s, and one that succeeds says so before
        the pause: ``/readyz`` is not left naming this loop for an interval."""
        await self.sweep()
        self.store.health.ok("retention")
        await asyncio.sleep(self.settings.retention_interval)

    async def groups(self, now: float) -> list[Group]:
        """The functions grouped by age (shortest first), with their cutoffs."""
        fns = await self.registry.all()
        default = self.default_age
        ages: dict[float, list[str]] = {}
        for name, info in fns.items():
            age = info.config.get("retention") or default
            if age:
                ages.setdefault(float(age), []).append(name)
        if default:
            async with self.store.read() as tx:
                stored = await tx.retention.function_names()
            orphans = [n for n in stored if n not in fns]
            if orphans:
                ages.setdefault(default, []).extend(orphans)
        return [(sorted(names), now - age) for age, names in sorted(ages.items())]

    async def sweep(self) -> Swept:
        """One pass: the expired runs, a batch per transaction, then the old events."""
        now = self.clock()
        batch = self.settings.retention_batch
        groups = await self.groups(now)
        runs = run_batches = 0
        while groups:
            found, gone = await self.store.transact(
                lambda tx: self._delete_runs(tx, groups, batch))
            run_batches += 1
            runs += len(gone)
            self.metrics.deleted([function for _, function in gone], 0)
            if found < batch or not gone:
                break
            await asyncio.sleep(0)  # let the engine's transactions in between
        events = event_batches = 0
        default = self.default_age
        while default:
            n = await self.store.transact(
                lambda tx: tx.retention.delete_events(now - default, batch))
            event_batches += 1
            events += n
            self.metrics.deleted([], n)
            if n < batch:
                break
            await asyncio.sleep(0)
        flow = 0
        while True:
            n = await self.store.transact(lambda tx: tx.flow.sweep(now, IDLE_S, batch))
            flow += n
            if n < batch:
                break
            await asyncio.sleep(0)
        if runs or events:
            log.info("retention: deleted %d ended runs and %d events", runs, events)
        return Swept(runs, events, run_batches, event_batches, flow)

    @staticmethod
    async def _delete_runs(tx: Tx, groups: list[Group],
                           batch: int) -> tuple[int, list[tuple[str, str]]]:
        ids = await tx.retention.expired(groups, batch)
        return len(ids), await tx.retention.delete_runs(ids)
