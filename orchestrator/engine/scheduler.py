"""Time-driven work other than the queue: run deadlines, one-off schedules, cron fires.

It sleeps until the earliest of (next run deadline, next schedule, next cron fire), so
idle triggers cost nothing between their ticks. A cron fire starts a run whose
idempotency key is ``cron:<cron id>:<fire time>``: however many replicas race for a
tick, or however often the orchestrator restarts, a tick starts one run. Ticks missed
while no orchestrator ran are not replayed one by one: on start, the latest missed tick
fires once if it is within the grace period, then the cron moves on. A paused cron's
ticks move on as if it fired, without starting a run: resuming it fires none of the
ticks it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from orchestrator.engine import cron
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import NewRun, create_runs
from orchestrator.engine.lifecycle import Effects, cancel_run
from orchestrator.engine.views import iso
from orchestrator.loops import supervise
from orchestrator.store import CronRow, Store, Tx
from sdk import protocol as p

log = logging.getLogger("orchestrator.scheduler")

BATCH = 500


class Scheduler:
    def __init__(self, store: Store, hub: Hub, *, poll_interval: float = 5.0,
                 cron_grace: float = 60.0) -> None:
        self.store = store
        self.hub = hub
        self.poll_interval = poll_interval
        self.cron_grace = cron_grace
        self.changed = asyncio.Event()
        self.next_wake = 0.0

    def poke(self) -> None:
        """A schedule or cron was added or removed: look again."""
        self.changed.set()

    def poke_at(self, t: float) -> None:
        """Something falls due at ``t``: look again if that is before the planned wake."""
        if t < self.next_wake:
            self.changed.set()

    async def run(self) -> None:
        await supervise("scheduler", self.run_once, self.store.health,
                        max_delay=min(2.0, self.poll_interval))

    async def run_once(self) -> None:
        """Do what is due, then sleep until the next thing falls due (one pass of the
        supervised loop: a failed read or write is retried after a backoff)."""
        self.changed.clear()
        self.next_wake = float("inf")  # poke_at during the tick: look again at once
        if await self.tick(time.time()):
            return
        async with self.store.read() as tx:
            nxt = [t for t in (await tx.runs.next_deadline(), await tx.schedules.next_at(),
                               await tx.crons.next_at()) if t is not None]
        delay = min([self.poll_interval, *(t - time.time() for t in nxt)])
        self.store.health.ok("scheduler")  # recovered, though this pass sleeps on
        self.next_wake = time.time() + delay
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), delay)

    async def tick(self, now: float) -> bool:
        """Do what is due; True if there may be more."""
        async def work(tx: Tx, fx: Effects) -> int:
            n = await self._timeouts(tx, now, fx)
            n += await self._schedules(tx, now, fx)
            return n + await self._crons(tx, now, fx)

        return await self.hub.transact(work) >= BATCH

    async def _timeouts(self, tx: Tx, now: float, fx: Effects) -> int:
        found = await tx.runs.timed_out(now, BATCH)
        for run, which in found:
            if which == "queue":
                err = {"type": "QueueTimeout", "message": f"not started by "
                       f"{iso(run.start_timeout_at)} (its queue timeout)"}
            else:
                err = {"type": "RunTimeout", "message": f"not finished by "
                       f"{iso(run.timeout_at)} (its timeout)"}
            await cancel_run(tx, run, p.RunStatus.TIMED_OUT, err, now, fx)
        return len(found)

    async def _schedules(self, tx: Tx, now: float, fx: Effects) -> int:
        due = await tx.schedules.due(now, BATCH)
        for s in due:
            [rid] = await create_runs(tx, [NewRun(s.function, s.input_json,
                                                  idempotency_key=f"schedule:{s.id}",
                                                  priority=s.priority)], now, fx)
            await tx.schedules.fired(s.id, rid)
        return len(due)

    async def _crons(self, tx: Tx, now: float, fx: Effects) -> int:
        due = await tx.crons.due(now, BATCH)
        for c in due:
            await self._fire(tx, c, now, fx)
        return len(due)

    async def _fire(self, tx: Tx, c: CronRow, now: float, fx: Effects) -> None:
        tick = c.next_fire_at
        if tick is None:  # not due: ``crons.due`` selects only crons with a next fire time
            return
        try:
            trigger = cron.parse(c.expression, c.timezone)
        except cron.CronError as exc:
            log.error("cron %s no longer parses (%s): disabled", c.id, exc,
                      extra={"function": c.function})
            await tx.crons.advance(c.id, tick, None, None)
            return
        # the latest tick at or before now (missed ticks are not fired one by one)
        latest = tick
        if now - tick > 1.0:
            step = cron.next_fire(trigger, max(tick, now - self.cron_grace - 1.0))
            while step is not None and step <= now:
                latest, step = step, cron.next_fire(trigger, step)
        nxt = cron.next_fire(trigger, max(now, latest))
        late = now - latest > self.cron_grace
        # a local time the clocks went back over fired the first time round
        repeated = cron.repeats_wall_clock(c.last_fire_at, latest, c.timezone)
        # a paused cron moves on without firing (resuming fires none of the missed ticks)
        fire = not late and not repeated and not c.paused
        if not await tx.crons.advance(c.id, tick, nxt, latest if fire else None):
            return  # another replica moved it first
        if late and not c.paused:
            log.warning("cron %s missed its tick at %s (beyond the %ss grace): skipped",
                        c.id, iso(latest), self.cron_grace, extra={"function": c.function})
        if not fire:
            return
        await create_runs(tx, [NewRun(c.function, c.input_json,
                                      idempotency_key=f"cron:{c.id}:{latest:.3f}")], now, fx)
