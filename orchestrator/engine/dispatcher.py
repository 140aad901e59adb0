"""Claims due work from the queue and delivers it to apps.

One loop per replica: claim a batch of due rows under a lease (in the same transaction,
mark the runs running and time out expired waits), build each run's request from its
memo, invoke the apps concurrently, and hand every outcome to the reducer. Leases of
calls still in flight are renewed, so a replica that dies loses its claims within one
lease TTL, and another replica (or this one, restarted) takes them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from orchestrator.config import Settings
from orchestrator.engine import concurrency
from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.dag import FAILURE_KEY
from orchestrator.engine.flow import hold_starts
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import resolve_wait
from orchestrator.engine.invoker import MEMO_NEEDED, Delivered, Failed, Invoker, Outcome
from orchestrator.engine.lifecycle import Effects, end_run
from orchestrator.engine.reducer import Reducer
from orchestrator.engine.registry import FunctionInfo, Registry
from orchestrator.engine.tails import MemoTails, memo_epoch
from orchestrator.engine.tracing import CallSpan
from orchestrator.loops import supervise
from orchestrator.store import ClaimedRow, RunRow, StepRow, Store, Tx
from sdk import protocol as p

log = logging.getLogger("orchestrator.dispatcher")

TERMINAL = p.TERMINAL


def memo_entry(row: StepRow) -> p.MemoEntry:
    """The wire memo entry of a stored step row (a null output is sent as absent)."""
    return p.memo_entry(
        row.step_id, row.seq, row.name, row.kind, row.status, attempts=row.attempts,
        output=p.MISSING if row.output_json is None else json.loads(row.output_json),
        error=None if row.error_json is None else json.loads(row.error_json))


def _waits_for_event(run: RunRow) -> bool:
    w = run.waiting_json
    return bool(w and json.loads(w).get("kind") == "event")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        invoker: Invoker,
        reducer: Reducer,
        hub: Hub,
        settings: Settings,
    ) -> None:
        self.store = store
        self.registry = registry
        self.invoker = invoker
        self.reducer = reducer
        self.hub = hub
        self.notifier = hub.notifier
        self.settings = settings
        self.metrics = hub.metrics
        self.tracing = hub.tracing
        self.inflight: dict[str, Claim] = {}
        self.answered: dict[str, Claim] = {}
        """Calls answered, their outcome waiting in the reducer's queue (leases renewed)."""
        self._room = asyncio.Event()  # set when a call in flight ends
        self._tasks: set[asyncio.Task[None]] = set()
        self._limited_probe_at = 0.0
        self._limited: set[str] = set()  # the rows the claim in progress leased limited
        self.tails = MemoTails()
        """Runs whose app keeps their memo's head (``settings.memo_tails``)."""

    async def run(self) -> None:
        health = self.store.health
        renew = asyncio.create_task(supervise("lease renewal", self._renew_leases, health),
                                    name="lease renewal")
        try:
            await supervise("dispatcher", self.run_once, health)
        finally:
            renew.cancel()
            for t in list(self._tasks):
                t.cancel()

    async def run_once(self) -> None:
        """Claim and start what is due; if nothing was, sleep until more may be."""
        if await self.tick() == 0:
            await self._idle()
        else:
            self.store.health.ok("dispatcher")

    async def _idle(self) -> None:
        """Sleep until woken, or until the next row falls due, or the poll interval.

        While it sleeps, ``notifier.planned_wake`` says until when: a transaction that
        schedules a row due before then (``Effects.due_at``) wakes it to plan again, as
        another replica's notification does (``Notifier.heard``: a row it made due, a
        lease of its own that may expire unrenewed). Outside the sleep it is inf, so
        that any row scheduled meanwhile wakes it."""
        async with self.store.read() as tx:
            nxt = await tx.queue.next_due(time.time())
        self.store.health.ok("dispatcher")  # it reached the database: not failing now,
        # though the pass (which sleeps) ends later
        delay = self.idle_poll()
        if nxt is not None:
            delay = min(delay, max(0.0, nxt - time.time() + 0.001))
        if delay <= 0:
            return
        # not cleared here: ``tick`` cleared it before claiming, so a wake-up that came
        # since (during the claim or the read above) ends this wait at once
        self.notifier.planned_wake = time.time() + delay
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.notifier.work.wait(), delay)
        finally:
            self.notifier.planned_wake = float("inf")

    def idle_poll(self) -> float:
        """The longest idle sleep: a safety net while other replicas' notifications are
        heard (``notify_poll_interval``), else the poll (``poll_interval``)."""
        if self.notifier.listening:
            return max(self.settings.poll_interval, self.settings.notify_poll_interval)
        return self.settings.poll_interval

    async def tick(self) -> int:
        """Claim what is due (as many as there are free slots) and start delivering it."""
        free = self.settings.max_inflight - len(self.inflight)
        if free <= 0:  # at capacity: wait for a call to end (never spin)
            self._room.clear()
            await self._room.wait()
            return 1
        self.notifier.work.clear()
        claims = await self.claim(min(free, 256))
        self._start(claims)
        return len(claims)

    def _start(self, claims: list[Claim]) -> None:
        for c in claims:
            self.inflight[c.run_id] = c
            t = asyncio.create_task(self._deliver(c))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def lease(self) -> Lease | None:
        """Room to create runs already claimed by this replica (None: at capacity)."""
        room = self.settings.max_inflight - len(self.inflight)
        if room <= 0:
            return None
        return Lease(self.settings.worker_id, time.time() + self.settings.lease_ttl, room,
                     tails=self.tails if self.settings.memo_tails else None)

    def adopt(self, claims: list[Claim]) -> None:
        """Deliver runs created already claimed (their transaction has committed)."""
        self._start(claims)

    def applied(self, claims: list[Claim]) -> None:
        """The reducer is done with these calls' outcomes: their leases need no renewal."""
        freed = False
        for c in claims:
            if self.answered.get(c.run_id) is c:
                del self.answered[c.run_id]
            freed = freed or c.limited
        if freed:  # a concurrency slot is free (its answer committed): claim again
            self.notifier.wake_dispatcher()

    async def claim(self, limit: int) -> list[Claim]:
        now = time.time()
        self._limited.clear()
        got = await self.store.transact(lambda tx: self._claim(tx, now, limit))
        if got is None:
            return []
        rows, runs, done, memos, fns, since = got
        self.notifier.tell(now + self.settings.lease_ttl)  # when another may take over
        return [
            Claim(r.run_id, r.claims, r.delivery_failures, r.first_failure_at, runs[r.run_id],
                  fns.get(runs[r.run_id].function), memos[r.run_id],
                  since.get(r.run_id, 0), limited=r.run_id in self._limited)
            for r in rows
            if r.run_id not in done
        ]

    def _claims_limited(self, now: float) -> bool:
        """Whether this claim looks at rows in concurrency groups: while a function known
        declares a limit, else once a second (rows left grouped by a declaration since
        removed, or made by a replica whose registry is ahead of this one's)."""
        if self.registry.limited or now - self._limited_probe_at >= 1.0:
            self._limited_probe_at = now
            return True
        return False

    async def _claim(self, tx: Tx, now: float, limit: int
                     ) -> tuple[list[ClaimedRow], dict[str, RunRow], list[str],
                                dict[str, list[StepRow]], dict[str, FunctionInfo],
                                dict[str, int]] | None:
        owner = self.settings.worker_id
        until = now + self.settings.lease_ttl
        # the limited claim first: what it takes is bounded by the limits, so it cannot
        # starve the plain claim's rows, which otherwise could starve its own
        rows = (await concurrency.claim_limited(tx, self.registry, owner, now, until, limit)
                if self._claims_limited(now) else [])
        self._limited.update(r.run_id for r in rows)
        if len(rows) < limit:
            rows += await tx.queue.claim(owner, now, until, limit - len(rows))
        if not rows:
            return None
        ids = [r.run_id for r in rows]
        runs = await tx.runs.get_many(ids)
        done = [rid for rid in ids if rid not in runs or runs[rid].status in TERMINAL]
        await tx.queue.remove(done)
        queued = [rid for rid in ids if rid in runs and runs[rid].status == "queued"]
        # the claimed runs' functions, looked up once: the throttle below and the calls
        fns = await self.registry.get_many({r.function for r in runs.values()})
        if queued:  # throttled first starts that do not conform now wait (engine/flow.py)
            held = await hold_starts(tx, [runs[rid] for rid in queued], fns, now)
            if held:
                rows = [r for r in rows if r.run_id not in held]
                ids = [rid for rid in ids if rid not in held]
                queued = [rid for rid in queued if rid not in held]
        if queued:
            await tx.runs.mark_running(queued, now)
        waiting = [rid for rid in ids if rid in runs and _waits_for_event(runs[rid])]
        for w in await tx.waits.take_expired(waiting, now):
            await resolve_wait(tx, w, None, now)
        # every claimed run's memo (its tail, if its app keeps the head) after the expired
        # waits are recorded
        live = [rid for rid in ids if rid not in done]
        since = self.tails.offer(runs, live) if self.settings.memo_tails else {}
        memos = await tx.steps.memo(live, since)
        return rows, runs, done, memos, fns, since

    async def _deliver(self, c: Claim) -> None:
        try:
            if c.fn is None:  # unknown when claimed: registered since?
                c.fn = await self.registry.get(c.run.function)
            if c.fn is None:
                await self._fail(c, "FunctionNotFound",
                                 f"no registered app serves {c.run.function!r}")
                return
            if c.fn.kind == "workflow" and c.run.task is None:
                await self._start_workflow(c)
                return
            signer = self.invoker.signer_for(c.fn.signing_key, c.fn.signing_key_fallback)
            span = (self.tracing.call(c.run_id, c.call_id, c.run.function, c.fn.app_id)
                    if self.tracing.enabled else None)
            t0 = time.perf_counter()
            outcome = await self._call(c, c.fn, signer, span)
            if outcome is None:  # failed the run
                return
            if self.metrics is not None:
                self.metrics.call(c.fn.app_id, time.perf_counter() - t0,
                                  outcome.kind if isinstance(outcome, Failed) else None)
            if span is not None:
                if isinstance(outcome, Failed):
                    span.end(outcome.kind, outcome.reason)
                else:
                    span.end(outcome.answer["status"])
            self.answered[c.run_id] = c
            self.reducer.submit(c, outcome)
        except Exception as exc:
            log.exception("delivering %s failed", c.call_id, extra=c.log_extra())
            self.answered[c.run_id] = c
            self.reducer.submit(c, Failed(f"orchestrator error: {exc}"))
        finally:
            self.inflight.pop(c.run_id, None)
            self._room.set()

    async def _start_workflow(self, c: Claim) -> None:
        """A workflow run whose start a control delayed (throttle, debounce, batch) was
        claimed: its queue row goes and its first tasks start (``dag.advance``, through
        the worklist). Advancing is idempotent, so a claim repeated after a crash between
        the claim and this transaction starts nothing twice."""
        async def work(tx: Tx, fx: Effects) -> None:
            await tx.queue.remove([c.run_id])
            if c.run.start_timeout_at is not None:
                await tx.runs.started(c.run_id)  # its queue timeout no longer applies
            fx.advance_later(c.run_id, time.time())

        await self.hub.transact(work)

    async def _call(self, c: Claim, fn: FunctionInfo, signer: p.Signer,
                    span: CallSpan | None) -> Outcome | None:
        """Send the call; if it carried the memo's tail only and the app's process does
        not keep the head (``memo_needed``: it ran nothing), send it again at once with
        the whole memo. None: the run failed instead (its memo is too large to send)."""
        for _ in range(2):
            body = self._request(c)
            if len(body) > p.MAX_REQUEST_BYTES:
                await self._fail(c, "MemoTooLarge", f"the run's memo grew to {len(body)} "
                                 f"bytes, past the {p.MAX_REQUEST_BYTES} a call may carry")
                return None
            outcome = await self.invoker.invoke(fn.url, body, c.call_id, signer, span=span,
                                                run_id=c.run_id, app=fn.app_id,
                                                function=c.run.function)
            if isinstance(outcome, Delivered):
                self.tails.learn(c.run, c.memo_from, c.memo, outcome.answer)
                return outcome
            self.tails.forget(c.run_id)
            if outcome.kind != MEMO_NEEDED or c.memo_from == 0:
                return outcome
            async with self.store.read() as tx:
                c.memo = (await tx.steps.memo([c.run_id]))[c.run_id]
            c.memo_from = 0
        return outcome

    def _request(self, c: Claim) -> bytes:
        run = c.run
        parents = json.loads(run.parents_json) if run.parents_json else {}
        failure = parents.pop(FAILURE_KEY, None)
        msg = p.invoke_request(
            call_id=c.call_id,
            function=run.function,
            run_id=run.id,
            attempt=run.attempt,
            input=json.loads(run.input_json),
            event=json.loads(run.event_json) if run.event_json else None,
            memo=[memo_entry(m) for m in c.memo],
            budget_ms=self._budget_ms(c),
            parent_id=run.parent_id,
            task=run.task,
            parents=parents,
            failure=failure,
            events=json.loads(run.events_json) if run.events_json else None,
            memo_epoch=memo_epoch(run) if self.settings.memo_tails else None,
            memo_from=c.memo_from,
        )
        return p.dumps(msg)

    def _budget_ms(self, c: Claim) -> int:
        """The app's own time budget, if set and below the call timeout; else the default."""
        own = c.fn.budget_ms if c.fn is not None else None
        if own is None or own >= self.settings.call_timeout * 1000:
            return self.settings.budget_ms
        return own

    async def _fail(self, c: Claim, type_: str, message: str) -> None:
        err = p.dumps({"type": type_, "message": message}).decode()
        await self.hub.transact(
            lambda tx, fx: end_run(tx, c.run, p.RunStatus.FAILED, None, err, time.time(), fx))

    async def _renew_leases(self) -> None:
        """One pass of the supervised lease renewal loop: wait a third of the TTL, then
        renew the leases of calls in flight or answered (in a retried transaction)."""
        await asyncio.sleep(max(0.2, self.settings.lease_ttl / 3))
        ids = sorted({*self.inflight, *self.answered})
        if ids:
            now = time.time()
            until = now + self.settings.lease_ttl
            await self.store.transact(
                lambda tx: tx.queue.extend(self.settings.worker_id, ids, until, now))
            self.notifier.tell(until)
