"""Applies each call's outcome to the run's state, in one transaction.

Answers are applied in batches (a group commit: many answers, many runs, one
transaction), which is what makes a single SQLite writer keep up under load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.config import Settings
from orchestrator.engine import views
from orchestrator.engine.claim import Claim
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events, resolve_wait
from orchestrator.engine.invoker import Delivered, Failed, Outcome
from orchestrator.engine.lifecycle import Effects, end_run, js, memo_row, opt_js
from orchestrator.engine.lookback import RecordedWait, recent_event
from orchestrator.errors import DatabaseUnavailable
from orchestrator.loops import supervise
from orchestrator.store import StepInsert, Store, Tx
from sdk import protocol as p
from sdk.function import Retry

log = logging.getLogger("orchestrator.reducer")

DELIVERY_RETRY = Retry(max_attempts=1_000_000, initial_delay=0.5, factor=2.0, max_delay=30.0)
BATCH = 256
MAX_RETRY_AFTER = 3600.0


class Reducer:
    def __init__(self, store: Store, hub: Hub, settings: Settings) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self._q: asyncio.Queue[tuple[Claim, Outcome]] = asyncio.Queue()

    def submit(self, claim: Claim, outcome: Outcome) -> None:
        self._q.put_nowait((claim, outcome))

    async def run(self) -> None:
        await supervise("reducer", self.run_once, self.store.health)

    async def run_once(self) -> None:
        """Apply the next batch of answers (one pass of the supervised loop)."""
        batch = [await self._q.get()]
        while len(batch) < BATCH and not self._q.empty():
            batch.append(self._q.get_nowait())
        await self.apply_batch(batch)

    async def apply_batch(self, batch: list[tuple[Claim, Outcome]]) -> None:
        try:
            try:
                await self._transact_patiently(batch)
            except Exception:
                log.exception("a batch failed; applying its answers one by one")
                for item in batch:
                    await self._apply_one(item)
        finally:
            if self.hub.handoff is not None:
                self.hub.handoff.applied([c for c, _ in batch])

    async def _transact_patiently(self, batch: list[tuple[Claim, Outcome]]) -> None:
        """Apply the batch; while the database cannot be reached, keep the answers and
        try again (backoff 0.1 s doubling to 1 s) for up to a lease TTL, after which
        their leases may be gone anyway. A restart of the database then costs no call
        made again, no step run twice."""
        give_up = time.monotonic() + self.settings.lease_ttl
        delay = 0.1
        while True:
            try:
                await self.hub.transact(lambda tx, fx: self._apply_all(tx, batch, fx))
                return
            except DatabaseUnavailable:
                if time.monotonic() + delay > give_up:
                    raise
                log.warning("the database is unavailable: %d answers wait to be applied",
                            len(batch))
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def _apply_one(self, item: tuple[Claim, Outcome]) -> None:
        try:
            await self.hub.transact(lambda tx, fx: self._apply_all(tx, [item], fx))
        except Exception as exc:
            log.exception("applying the answer to %s failed", item[0].call_id,
                          extra=item[0].log_extra())
            # count it as a failed delivery, so the run backs off (and eventually fails)
            # instead of being claimed again with the same answer forever
            bad = (item[0], Failed(f"the orchestrator could not apply the answer: "
                                   f"{type(exc).__name__}: {exc}"))
            try:
                await self.hub.transact(lambda tx, fx: self._apply_all(tx, [bad], fx))
            except Exception:
                log.exception("recording the failure of %s failed", item[0].call_id,
                              extra=item[0].log_extra())

    async def _apply_all(self, tx: Tx, batch: list[tuple[Claim, Outcome]], fx: Effects) -> None:
        fences = await tx.queue.fences([c.run_id for c, _ in batch])
        now = time.time()
        live = []
        for claim, outcome in batch:
            if fences.get(claim.run_id) != (self.settings.worker_id, claim.claims):
                log.info("discarded the answer to %s: its lease was lost or the run ended",
                         claim.call_id, extra=claim.log_extra())
            else:
                live.append((claim, outcome))
        # the steps of every answer in one statement (one round trip on PostgreSQL), before
        # anything reads a memo
        rows: list[StepInsert] = []
        for c, o in live:
            if isinstance(o, Delivered):
                for e in o.answer.get("steps", []):
                    rows.append(row := self._step_row(c.run_id, e))
                    fx.steps.append((c.run.function, row["status"]))
                    if fx.tracing:
                        fx.traced_steps.append((c.run_id, row))
        await tx.steps.record(rows)
        for claim, outcome in live:
            if isinstance(outcome, Failed):
                await self._delivery_failed(tx, claim, outcome, now, fx)
            else:
                await self._answered(tx, claim, outcome, now, fx)

    # -- outcomes ----------------------------------------------------------------------------

    @staticmethod
    async def _schedule(tx: Tx, fx: Effects, run_id: str, at: float, **queue: Any) -> None:
        """The run's next call falls due at ``at``; the dispatcher, if it sleeps past
        that, wakes once this commits (``Effects.due_at``)."""
        await tx.queue.schedule(run_id, at, **queue)
        fx.due_at(at)


    async def _delivery_failed(
        self, tx: Tx, c: Claim, f: Failed, now: float, fx: Effects
    ) -> None:
        if f.timed_out:  # the app took the call but not its answer: an attempt failed
            err = {"type": "CallTimeout", "message": f.reason, "retriable": True}
            await self._errored(tx, c, err, now, fx)
            return
        failures = c.delivery_failures + 1
        if f.misconfigured:  # not sent again until a probe verifies: not "unreachable"
            await self._app_misconfigured(tx, c, f, failures, now, fx)
            return
        first = c.first_failure_at or now
        if now - first >= self.settings.unreachable_timeout:
            err = {"type": "DeliveryFailed", "message": f"no answer from the app since "
                   f"{views.iso(first)} ({failures} attempts); last: {f.reason}"}
            await end_run(tx, c.run, p.RunStatus.FAILED, None, js(err), now, fx)
            return
        delay = min(DELIVERY_RETRY.delay(failures), self.settings.delivery_backoff_max)
        if f.retry_after is not None:  # the app asked for a delay: honour it, within reason
            delay = min(f.retry_after, MAX_RETRY_AFTER)
        at = now + delay
        await self._schedule(tx, fx, c.run_id, at, delivery_failures=failures,
                             first_failure_at=first)
        await tx.runs.set_waiting(
            c.run_id, js({"kind": "delivery_retry", "at": at, "reason": f.reason,
                          "failures": failures})
        )

    async def _app_misconfigured(self, tx: Tx, c: Claim, f: Failed, failures: int,
                                 now: float, fx: Effects) -> None:
        if c.fn is not None:
            await tx.apps.mark_misconfigured(c.fn.url, f.reason, now + 1.0)
        at = now + min(DELIVERY_RETRY.delay(failures), self.settings.delivery_backoff_max)
        await self._schedule(tx, fx, c.run_id, at, delivery_failures=failures)
        await tx.runs.set_waiting(
            c.run_id, js({"kind": "app_misconfigured", "at": at, "reason": f.reason,
                          "app": c.fn.app_id if c.fn is not None else None,
                          "failures": failures}))

    async def _answered(self, tx: Tx, c: Claim, d: Delivered, now: float, fx: Effects) -> None:
        a = d.answer
        if c.run.start_timeout_at is not None:
            await tx.runs.started(c.run_id)
        # (its steps are recorded: _apply_all records every answer's at once)
        if a.get("events"):
            await ingest_events(tx, a["events"], now, fx)  # sets fx.wake if work fell due
        if a["status"] == p.Status.COMPLETE:
            skipped = a.get("skipped") is True and c.run.task is not None  # workflow tasks
            done = p.RunStatus.SKIPPED if skipped else p.RunStatus.COMPLETED
            await end_run(tx, c.run, done, js(a.get("output")), None, now, fx)
        elif a["status"] == p.Status.ERROR:
            await self._errored(tx, c, a["error"], now, fx)
        else:
            await self._yielded(tx, c, a["op"], now, fx)

    @staticmethod
    def _step_row(run_id: str, e: p.MemoEntry) -> StepInsert:
        return {
            "run_id": run_id, "step_id": e["id"], "seq": e["seq"], "name": e["name"],
            "kind": e["kind"], "status": e.get("status", p.StepStatus.COMPLETED),
            "attempts": int(e.get("attempts", 0)),
            "output_json": opt_js(e.get("output")), "error_json": opt_js(e.get("error")),
            "started_at": e.get("started_at"), "ended_at": e.get("ended_at"),
            "deadline_at": None,
        }

    async def _errored(
        self, tx: Tx, c: Claim, err: Mapping[str, Any], now: float, fx: Effects
    ) -> None:
        retry = c.fn.retry_for(c.run.task) if c.fn else Retry()
        attempt = c.run.attempt + 1
        if err.get("retriable", True) and attempt < retry.max_attempts:
            ms = err.get("retry_after_ms")
            delay = retry.delay(attempt)
            if isinstance(ms, int | float) and not isinstance(ms, bool) and 0 <= ms < 1e12:
                delay = min(ms / 1000.0, MAX_RETRY_AFTER)  # the app asked: within reason
            at = now + delay
            await self._schedule(tx, fx, c.run_id, at)
            waiting = {"kind": "retry", "at": at, "attempt": attempt,
                       "error": {"type": err.get("type"), "message": err.get("message")}}
            await tx.runs.set_attempt(c.run_id, attempt, js(waiting))
            return
        await end_run(tx, c.run, p.RunStatus.FAILED, None, js(dict(err)), now, fx)

    async def _yielded(
        self, tx: Tx, c: Claim, op: p.AnyOp, now: float, fx: Effects
    ) -> None:
        rid = c.run_id
        if op["op"] == p.Op.RESUME:
            at = float(op.get("at") or now)
            await self._schedule(tx, fx, rid, at)
            await tx.runs.set_waiting(rid, js({"kind": "resume", "at": at}) if at > now else None)
            fx.wake = fx.wake or at <= now
        elif op["op"] == p.Op.SLEEP:
            until = float(op["until"])
            await tx.steps.record([memo_row(rid, op, p.MemoKind.SLEEP, js(until), now, until,
                                            deadline=until)])
            await self._schedule(tx, fx, rid, until)
            await tx.runs.set_waiting(rid, js({"kind": "sleep", "step": op["id"],
                                               "until": until}))
        elif op["op"] == p.Op.WAIT_EVENT:
            await self._wait(tx, rid, op, now, fx)
        else:
            await self._spawn(tx, c, op, now, fx)

    async def _wait(self, tx: Tx, rid: str, op: p.WaitEventOp, now: float,
                    fx: Effects) -> None:
        match = dict(op.get("match") or {})
        timeout_at = op.get("timeout_at")
        found = await recent_event(tx, rid, op, now)  # None unless op has a lookback
        if found is not None:  # an event before the wait satisfies it: no waits row
            await resolve_wait(tx, RecordedWait(rid, op["id"], op["seq"], op["name"], now,
                                                timeout_at), found, now)
            await self._schedule(tx, fx, rid, now)
            fx.wake = True
            return
        await tx.waits.add([{
            "run_id": rid, "step_id": op["id"], "seq": op["seq"], "name": op["name"],
            "event": op["event"], "match_fields": p.match_fields(match),
            "match_key": p.match_key(op["event"], match), "match_json": js(match),
            "expires_at": timeout_at, "created_at": now, "purpose": "wait",
        }])
        if timeout_at is not None:
            await self._schedule(tx, fx, rid, float(timeout_at))
        else:
            await tx.queue.park(rid)
        await tx.runs.set_waiting(rid, js({"kind": "event", "step": op["id"],
                                           "event": op["event"], "match": match,
                                           "timeout_at": timeout_at}))

    async def _spawn(
        self, tx: Tx, c: Claim, op: p.SpawnOp, now: float, fx: Effects
    ) -> None:
        rid = c.run_id
        children = op["children"]
        wait = bool(op.get("wait", True))
        known = await self.hub.registry.get_many({ch["function"] for ch in children})
        unknown = sorted({ch["function"] for ch in children} - set(known))
        memo_kind = p.MemoKind.CHILDREN if wait else p.MemoKind.SPAWN
        if unknown:
            row = memo_row(rid, op, memo_kind, None, now, now)
            row["status"] = p.StepStatus.FAILED
            row["error_json"] = js({"type": "FunctionNotFound",
                                    "message": f"no function named {', '.join(unknown)}"})
            await tx.steps.record([row])
            await self._schedule(tx, fx, rid, now)
            await tx.runs.set_waiting(rid, None)
            fx.wake = True
            return
        specs = [
            NewRun(ch["function"], js(ch.get("input")), None, None, rid, op["id"], i, wait,
                   inherited_priority=c.run.priority)
            for i, ch in enumerate(children)
        ]
        ids = await create_runs(tx, specs, now, fx)  # sets fx.wake for runs not claimed
        if wait and ids:
            await tx.queue.park(rid)
            await tx.runs.set_pending_children(
                rid, len(ids),
                js({"kind": "children", "step": op["id"], "seq": op["seq"], "name": op["name"],
                    "pending": len(ids), "total": len(ids)}),
            )
        else:
            out = [] if wait else ids
            await tx.steps.record([memo_row(rid, op, memo_kind, js(out), now, now)])
            await self._schedule(tx, fx, rid, now)
            await tx.runs.set_waiting(rid, None)
