"""Applies each call's outcome to the run's state, in one transaction.

Answers are applied in batches (a group commit: many answers, many runs, one
transaction), which is what makes a single SQLite writer keep up under load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.config import Settings
from orchestrator.engine import views
from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events
from orchestrator.engine.invoker import Delivered, Failed, Outcome
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry
from orchestrator.store import Store, Tx
from sdk import protocol as p
from sdk.function import Retry

log = logging.getLogger("orchestrator.reducer")

DELIVERY_RETRY = Retry(max_attempts=1_000_000, initial_delay=0.5, factor=2.0, max_delay=30.0)
BATCH = 256
MAX_RETRY_AFTER = 3600.0


class Handoff(Protocol):
    """Where runs created already claimed go once their transaction commits."""

    def lease(self) -> Lease | None: ...

    def adopt(self, claims: list[Claim]) -> None: ...


@dataclass
class _Effects:
    ended: list[str] = field(default_factory=list)
    wake: bool = False
    lease: Lease | None = None


def _js(value: Any) -> str:
    return p.dumps(value).decode()


def _opt_js(value: Any) -> str | None:
    return None if value is None else _js(value)


class Reducer:
    def __init__(
        self, store: Store, registry: Registry, notifier: Notifier, settings: Settings
    ) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self.settings = settings
        self._q: asyncio.Queue[tuple[Claim, Outcome]] = asyncio.Queue()
        self.handoff: Handoff | None = None

    def submit(self, claim: Claim, outcome: Outcome) -> None:
        self._q.put_nowait((claim, outcome))

    async def run(self) -> None:
        while True:
            batch = [await self._q.get()]
            while len(batch) < BATCH and not self._q.empty():
                batch.append(self._q.get_nowait())
            try:
                await self.apply_batch(batch)
            except Exception:
                log.exception("applying a batch of %d answers failed", len(batch))

    def _effects(self) -> _Effects:
        return _Effects(lease=self.handoff.lease() if self.handoff else None)

    async def apply_batch(self, batch: list[tuple[Claim, Outcome]]) -> None:
        fx = self._effects()
        try:
            async with self.store.write() as tx:
                await self._apply_all(tx, batch, fx)
        except Exception:
            log.exception("a batch failed; applying its answers one by one")
            fx = _Effects()
            for item in batch:
                one = self._effects()
                try:
                    async with self.store.write() as tx:
                        await self._apply_all(tx, [item], one)
                except Exception as exc:
                    log.exception("applying the answer to %s failed", item[0].call_id)
                    # count it as a failed delivery, so the run backs off (and eventually
                    # fails) instead of being re-claimed with the same answer forever
                    bad = (item[0], Failed(f"the orchestrator could not apply the answer: "
                                           f"{type(exc).__name__}: {exc}"))
                    try:
                        async with self.store.write() as tx:
                            await self._apply_all(tx, [bad], one)
                    except Exception:
                        log.exception("recording the failure of %s failed", item[0].call_id)
                        continue
                fx.ended += one.ended
                fx.wake = fx.wake or one.wake
                self._handoff(one)
            fx.lease = None
        self._handoff(fx)
        if fx.ended:
            self.notifier.runs_ended(fx.ended)
        if fx.wake:
            self.notifier.wake_dispatcher()

    def _handoff(self, fx: _Effects) -> None:
        if fx.lease is not None and fx.lease.claims and self.handoff is not None:
            self.handoff.adopt(fx.lease.claims)

    async def _apply_all(self, tx: Tx, batch: list[tuple[Claim, Outcome]], fx: _Effects) -> None:
        fences = await tx.queue.fences([c.run_id for c, _ in batch])
        now = time.time()
        for claim, outcome in batch:
            if fences.get(claim.run_id) != (self.settings.worker_id, claim.claims):
                log.warning("discarded the answer to %s: its lease was lost", claim.call_id)
                continue
            if isinstance(outcome, Failed):
                await self._delivery_failed(tx, claim, outcome, now, fx)
            else:
                await self._answered(tx, claim, outcome, now, fx)

    # -- outcomes ----------------------------------------------------------------------------

    async def _delivery_failed(
        self, tx: Tx, c: Claim, f: Failed, now: float, fx: _Effects
    ) -> None:
        if f.timed_out:  # the app took the call but not its answer: an attempt failed
            err = {"type": "CallTimeout", "message": f.reason, "retriable": True}
            await self._errored(tx, c, err, now, fx)
            return
        failures = c.delivery_failures + 1
        first = c.first_failure_at or now
        if now - first >= self.settings.unreachable_timeout:
            err = {"type": "DeliveryFailed", "message": f"no answer from the app since "
                   f"{views.iso(first)} ({failures} attempts); last: {f.reason}"}
            await self.end_run(tx, c.run, "failed", None, _js(err), now, fx)
            return
        delay = min(DELIVERY_RETRY.delay(failures), self.settings.delivery_backoff_max)
        if f.retry_after is not None:  # the app asked for a delay: honour it, within reason
            delay = min(f.retry_after, MAX_RETRY_AFTER)
        at = now + delay
        await tx.queue.schedule(c.run_id, at, delivery_failures=failures, first_failure_at=first)
        await tx.runs.set_waiting(
            c.run_id, _js({"kind": "delivery_retry", "at": at, "reason": f.reason,
                           "failures": failures})
        )

    async def _answered(self, tx: Tx, c: Claim, d: Delivered, now: float, fx: _Effects) -> None:
        a = d.answer
        rows = [self._step_row(c.run_id, e) for e in a.get("steps", [])]
        await tx.steps.record(rows)
        if a.get("events"):
            await ingest_events(tx, a["events"], now, fx.lease)
            fx.wake = True
        status = a["status"]
        if status == p.Status.COMPLETE:
            await self.end_run(tx, c.run, "completed", _js(a.get("output")), None, now, fx)
        elif status == p.Status.ERROR:
            await self._errored(tx, c, a["error"], now, fx)
        else:
            await self._yielded(tx, c, a["op"], now, fx)

    @staticmethod
    def _step_row(run_id: str, e: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "run_id": run_id, "step_id": e["id"], "seq": e["seq"], "name": e["name"],
            "kind": e["kind"], "status": e.get("status", p.StepStatus.COMPLETED),
            "attempts": int(e.get("attempts", 0)),
            "output_json": _opt_js(e.get("output")), "error_json": _opt_js(e.get("error")),
            "started_at": e.get("started_at"), "ended_at": e.get("ended_at"),
        }

    async def _errored(
        self, tx: Tx, c: Claim, err: Mapping[str, Any], now: float, fx: _Effects
    ) -> None:
        retry = c.fn.retry if c.fn else Retry()
        attempt = c.run.attempt + 1
        if err.get("retriable", True) and attempt < retry.max_attempts:
            ms = err.get("retry_after_ms")
            at = now + (ms / 1000.0 if isinstance(ms, int | float) else retry.delay(attempt))
            await tx.queue.schedule(c.run_id, at)
            waiting = {"kind": "retry", "at": at, "attempt": attempt,
                       "error": {"type": err.get("type"), "message": err.get("message")}}
            await tx.runs.set_attempt(c.run_id, attempt, _js(waiting))
            return
        await self.end_run(tx, c.run, "failed", None, _js(dict(err)), now, fx)

    async def _yielded(
        self, tx: Tx, c: Claim, op: Mapping[str, Any], now: float, fx: _Effects
    ) -> None:
        kind = op["op"]
        rid = c.run_id
        if kind == p.Op.RESUME:
            at = float(op.get("at") or now)
            await tx.queue.schedule(rid, at)
            await tx.runs.set_waiting(rid, _js({"kind": "resume", "at": at}) if at > now else None)
            fx.wake = fx.wake or at <= now
        elif kind == p.Op.SLEEP:
            until = float(op["until"])
            await tx.steps.record([self._memo(rid, op, p.MemoKind.SLEEP, _js(until), now, until)])
            await tx.queue.schedule(rid, until)
            await tx.runs.set_waiting(rid, _js({"kind": "sleep", "step": op["id"],
                                                "until": until}))
        elif kind == p.Op.WAIT_EVENT:
            await self._wait(tx, rid, op, now)
        elif kind == p.Op.SPAWN:
            await self._spawn(tx, c, op, now, fx)

    async def _wait(self, tx: Tx, rid: str, op: Mapping[str, Any], now: float) -> None:
        match = dict(op.get("match") or {})
        timeout_at = op.get("timeout_at")
        await tx.waits.add({
            "run_id": rid, "step_id": op["id"], "seq": op["seq"], "name": op["name"],
            "event": op["event"], "match_fields": p.match_fields(match),
            "match_key": p.match_key(op["event"], match), "match_json": _js(match),
            "expires_at": timeout_at, "created_at": now,
        })
        if timeout_at is not None:
            await tx.queue.schedule(rid, float(timeout_at))
        else:
            await tx.queue.park(rid)
        await tx.runs.set_waiting(rid, _js({"kind": "event", "step": op["id"],
                                            "event": op["event"], "match": match,
                                            "timeout_at": timeout_at}))

    async def _spawn(
        self, tx: Tx, c: Claim, op: Mapping[str, Any], now: float, fx: _Effects
    ) -> None:
        rid = c.run_id
        children = op["children"]
        wait = bool(op.get("wait", True))
        known = await self.registry.get_many({ch["function"] for ch in children})
        unknown = sorted({ch["function"] for ch in children} - set(known))
        memo_kind = p.MemoKind.CHILDREN if wait else p.MemoKind.SPAWN
        if unknown:
            row = self._memo(rid, op, memo_kind, None, now, now)
            row["status"] = p.StepStatus.FAILED
            row["error_json"] = _js({"type": "FunctionNotFound",
                                     "message": f"no function named {', '.join(unknown)}"})
            await tx.steps.record([row])
            await tx.queue.schedule(rid, now)
            await tx.runs.set_waiting(rid, None)
            fx.wake = True
            return
        specs = [
            NewRun(ch["function"], _js(ch.get("input")), None, None, rid, op["id"], i, wait)
            for i, ch in enumerate(children)
        ]
        ids = await create_runs(tx, specs, now, fx.lease)
        fx.wake = True
        if wait and ids:
            await tx.queue.park(rid)
            await tx.runs.set_pending_children(
                rid, len(ids),
                _js({"kind": "children", "step": op["id"], "seq": op["seq"], "name": op["name"],
                     "pending": len(ids), "total": len(ids)}),
            )
        else:
            out = [] if wait else ids
            await tx.steps.record([self._memo(rid, op, memo_kind, _js(out), now, now)])
            await tx.queue.schedule(rid, now)
            await tx.runs.set_waiting(rid, None)

    @staticmethod
    def _memo(
        rid: str, op: Mapping[str, Any], kind: p.MemoKind, output_json: str | None,
        started: float, ended: float,
    ) -> dict[str, Any]:
        return {
            "run_id": rid, "step_id": op["id"], "seq": op["seq"], "name": op["name"],
            "kind": kind, "status": p.StepStatus.COMPLETED, "attempts": 0,
            "output_json": output_json, "error_json": None,
            "started_at": started, "ended_at": ended,
        }

    # -- ending runs ------------------------------------------------------------------------

    async def end_run(
        self, tx: Tx, run: Any, status: str, output_json: str | None, error_json: str | None,
        now: float, fx: _Effects,
    ) -> None:
        """End a run; if its parent waits for it and it was the last child, wake the parent."""
        await tx.runs.finish_many([{"rid": run.id, "status": status, "output_json": output_json,
                                    "error_json": error_json, "ended_at": now}])
        await tx.queue.remove([run.id])  # a run in flight has no wait row to remove
        fx.ended.append(run.id)
        if run.parent_id and run.parent_waits:
            left = await tx.runs.child_done(run.parent_id)
            if left == 0:
                await self._gather(tx, run.parent_id, now)
                fx.wake = True

    async def _gather(self, tx: Tx, parent_id: str, now: float) -> None:
        parent = await tx.runs.get(parent_id)
        if parent is None or parent.status in ("completed", "failed", "cancelled"):
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
        await tx.steps.record([self._memo(parent_id, op, p.MemoKind.CHILDREN, _js(results),
                                          now, now)])
        await tx.runs.set_waiting(parent_id, None)
        await tx.queue.wake(parent_id, now)
