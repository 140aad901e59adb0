"""The engine's facade and composition root: it builds the engine's parts, wires them
together, and answers what the REST API (and the CLI) may ask by delegating to the module
that owns each concept (``apps``, ``schedules``, ``control``, ``ingest``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from orchestrator.config import Settings
from orchestrator.engine import answers as a
from orchestrator.engine import control, tracing, views
from orchestrator.engine.apps import Apps
from orchestrator.engine.checks import check_priority, input_json, require_known
from orchestrator.engine.control import RunFilter
from orchestrator.engine.dag import declared_tasks
from orchestrator.engine.dispatcher import Dispatcher
from orchestrator.engine.flow import controls as flow_controls
from orchestrator.engine.group import GroupCommit
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.keys import Keys
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.metrics import Metrics
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.probe import Prober
from orchestrator.engine.reducer import Reducer
from orchestrator.engine.registry import Registry
from orchestrator.engine.retention import Retention
from orchestrator.engine.scheduler import Scheduler
from orchestrator.engine.schedules import Schedules
from orchestrator.engine.webhook_sources import SourceSpec, WebhookSources
from orchestrator.errors import Invalid, NotFound
from orchestrator.store import RunCore, RunRow, StepRow, Store, Tx
from orchestrator.store.notify import Channel
from sdk import protocol as p

__all__ = ["MAX_BULK", "Engine", "RunFilter", "RunSpec", "SourceSpec"]

log = logging.getLogger("orchestrator")

TERMINAL = p.TERMINAL
MAX_BULK = 5000
SCHEDULER_POLL = 5.0
"""The scheduler's longest sleep while it cannot hear other replicas (or has none)."""


@dataclass(frozen=True)
class RunSpec:
    """One run to start: a function (or workflow), its input, an optional idempotency key."""

    function: str
    input: Any = None
    idempotency_key: str | None = None
    priority: int | None = None
    """1-10 (None: the function's declared priority, else 1)."""


_SPAWNS = frozenset({p.MemoKind.SPAWN, p.MemoKind.CHILDREN})


def _may_have_children(run: RunRow, steps: Sequence[StepRow]) -> bool:
    """Whether a run that is not a workflow's own run may have child runs (else
    ``children_of`` would find none: a statement saved on the hot path). Only a spawn
    makes them (``Reducer._spawn``), and a run that completed after one has its memo
    entry (children not waited for are recorded at once, those waited for when gathered,
    and the run cannot complete before). A run that ended otherwise may have been ended
    while its children ran (gathered into nothing), and a replay forgets the memo but not
    the children: those are looked up."""
    return bool(run.status != p.RunStatus.COMPLETED or run.pending_children
                or run.history_json not in (None, "", "[]")
                or any(s.kind in _SPAWNS for s in steps))


class Engine:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        if not settings.signing_key:
            raise ValueError("a signing key is required (DURABLE_SIGNING_KEY)")
        self.settings = settings
        self.store = Store(settings.database_url, pool_size=settings.db_pool_size,
                           synchronous=settings.sqlite_synchronous)
        self.notifier = Notifier()
        self.registry = Registry(self.store)
        self.metrics = Metrics(self.store, settings.metrics_cache_seconds)
        self.tracing = tracing.for_settings(settings.otel)
        self.hub = Hub(self.store, self.registry, self.notifier, self.metrics,
                       tracing=self.tracing)
        self.signer = p.Signer(settings.signing_key, settings.signing_key_fallback,
                               max_skew=settings.max_clock_skew)
        self.invoker = Invoker(self.signer, timeout=settings.call_timeout,
                               pool_size=settings.pool_per_app, transport=transport)
        self.reducer = Reducer(self.store, self.hub, settings)
        self.dispatcher = Dispatcher(self.store, self.registry, self.invoker, self.reducer,
                                     self.hub, settings)
        self.scheduler = Scheduler(self.store, self.hub, poll_interval=SCHEDULER_POLL,
                                   cron_grace=settings.cron_grace)
        self.hub.wire(handoff=self.dispatcher, timers=self.scheduler.poke_at)
        self.group = GroupCommit(self.hub, parallel=1 if self.store.exclusive else 4)
        """Triggers (runs started, events sent) committed together (``engine/group.py``)."""
        self.prober = Prober(self.store, self.invoker, settings)
        self.retention = Retention(self.store, self.registry, self.metrics, settings)
        self.notifier.timers = self.scheduler.poke_at
        self.channel: Channel | None = None
        """Notifications between replicas (PostgreSQL), wired to the notifier."""
        if self.store.backend.name == "postgresql":
            self.channel = Channel(self.store.db.url, self.notifier.heard, self._listening,
                                   check_every=settings.notify_poll_interval)
            self.notifier.broadcast = self.channel.send
            self.notifier.reach = settings.notify_poll_interval
        self.apps = Apps(self.store, self.registry, self.invoker,
                         allow_insecure=settings.allow_insecure_app_urls,
                         crons_changed=self._timers_changed,
                         default_keys=(settings.signing_key, settings.signing_key_fallback),
                         call_timeout=settings.call_timeout)
        self.schedules = Schedules(self.store, self.registry, changed=self._timers_changed)
        self.keys = Keys(self.store, settings.api_keys)
        self.webhooks = WebhookSources(self.store, self.hub)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False

    async def start(self) -> None:
        await self.store.open(wait=self.settings.db_connect_wait)
        if self.store.exclusive:
            # Embedded SQLite has one orchestrator (a file lock says so): leases left by
            # a previous process that died are void; take its calls over at once rather
            # than after they expire. Claim numbers keep growing, so no stale answer of
            # the dead process could be applied.
            released = await self.store.transact(lambda tx: tx.queue.release_all_leases())
            if released:
                log.info("took over %d calls left in flight by a previous process", released)
        await self.registry.reload()
        self._tasks = [asyncio.create_task(self.reducer.run(), name="reducer"),
                       asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
                       asyncio.create_task(self.scheduler.run(), name="scheduler"),
                       asyncio.create_task(self.prober.run(), name="prober"),
                       asyncio.create_task(self.retention.run(), name="retention")]
        if self.channel is not None:
            self._tasks.append(asyncio.create_task(self.channel.run(), name="notifications"))
        self.ready = True
        self.store.inject_faults()  # a test hook: nothing unless DURABLE_TEST_FAULT_RATE

    def _timers_changed(self) -> None:
        """A schedule or cron was made, changed or removed: this replica's scheduler and
        the others' look again."""
        self.scheduler.poke()
        self.notifier.tell(timer=0.0)

    def _listening(self, up: bool) -> None:
        """The notification connection is up (the loops sleep long, woken by the other
        replicas) or down (they poll at their short intervals until it is back)."""
        self.notifier.listen_state(up)
        long = self.settings.notify_poll_interval
        self.scheduler.poll_interval = max(SCHEDULER_POLL, long) if up else SCHEDULER_POLL
        self.prober.idle_interval = long if up else self.prober.interval
        self.scheduler.poke()

    async def stop(self) -> None:
        """Stop the loops and close connections. Never raises (even after a database
        outage, a shutdown must complete): what fails is logged."""
        self.ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("the %s loop had ended with an error", t.get_name())
        for close in (self.keys.settle, self.prober.flush_contacts, self.invoker.close,
                      self.store.close):
            try:
                await close()
            except Exception:
                log.exception("shutting down: %s failed", close.__qualname__)

    async def health(self) -> dict[str, str]:
        """What keeps this replica from serving (empty: ready): the database cannot be
        reached, is full, or a background loop is in its failure backoff."""
        problems: dict[str, str] = {}
        if not self.ready:
            problems["engine"] = "not started" if not self._tasks else "stopping"
        try:
            async with self.store.read() as tx:
                await tx.queue.next_wakeup()
            self.store.health.ok("database")
            storage = self.store.storage_problem()
            if storage:
                problems["storage"] = storage
        except Exception as exc:
            why = self.store.health.failing.get("database") or f"{type(exc).__name__}: {exc}"
            problems["database"] = f"unreachable: {why}"[:500]
        for name, why in self.store.health.problems().items():
            problems.setdefault(name, why)
        for t in self._tasks:  # a loop never ends while the engine runs; say so if one did
            if t.done() and self.ready:
                problems[t.get_name()] = "the loop ended"
        return problems

    async def metrics_text(self) -> bytes:
        """``/metrics``: this replica's counters and the shared queue's depth and lag."""
        return await self.metrics.exposition()

    # -- apps -------------------------------------------------------------------------------

    async def register_app(self, url: str, signing_key: str | None = None,
                           budget_ms: int | None = None, *,
                           generate_key: bool = False) -> a.RegisteredApp:
        return await self.apps.register(url, signing_key, budget_ms,
                                        generate_key=generate_key)

    async def rotate_app_key(self, app_id: str, key: str | None = None) -> a.AppKey:
        return await self.apps.rotate_key(app_id, key)

    async def drop_app_fallback_key(self, app_id: str) -> None:
        await self.apps.drop_fallback(app_id)

    async def set_app_budget(self, app_id: str, budget_ms: int | None) -> a.App:
        return await self.apps.set_budget(app_id, budget_ms)

    async def list_apps(self) -> list[a.App]:
        return await self.apps.list_apps()

    async def list_functions(self) -> list[a.Function]:
        return await self.apps.list_functions()

    async def get_function(self, name: str) -> a.FunctionDetail:
        return await self.apps.get_function(name)

    # -- triggers ---------------------------------------------------------------------------

    async def start_run(
        self, function: str, input: Any, idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> a.RunId:
        [rid] = await self.start_runs([RunSpec(function, input, idempotency_key, priority)])
        return {"id": rid}

    async def start_runs(self, specs: Sequence[RunSpec]) -> list[str]:
        """Start many runs in one transaction (all or none)."""
        if len(specs) > MAX_BULK:
            raise Invalid(f"at most {MAX_BULK} runs per request", "runs")
        await require_known(self.registry, {s.function for s in specs})
        new = [NewRun(s.function, input_json(s.input, f"runs[{i}].input"),
                      idempotency_key=s.idempotency_key,
                      priority=check_priority(s.priority, f"runs[{i}].priority"))
               for i, s in enumerate(specs)]

        async def work(tx: Tx, fx: Effects) -> list[str]:
            return await create_runs(tx, new, time.time(), fx)

        # on PostgreSQL, a group's works take their row locks one work after another, not
        # in one sorted order: runs with idempotency keys or flow controls (which lock
        # keys) commit alone, or two groups could deadlock (engine/group.py)
        infos = await self.registry.get_many({s.function for s in specs})
        alone = not self.store.exclusive and (
            any(s.idempotency_key is not None for s in specs)
            or any(flow_controls(infos.get(s.function)) is not None for s in specs))
        return await self.group.transact(work, alone=alone)

    async def send_events(self, events: Sequence[Mapping[str, Any]]) -> a.EventsAccepted:
        async def work(tx: Tx, fx: Effects) -> a.EventsAccepted:
            res = await ingest_events(tx, events, time.time(), fx)
            return {"ids": res.event_ids, "runs": res.run_ids, "duplicate": res.duplicate}

        # events lock the flow keys of the runs they trigger and their names' guards: on
        # PostgreSQL they commit alone (see start_runs)
        return await self.group.transact(work, alone=not self.store.exclusive)

    async def list_events(self, name: str | None, limit: int,
                          cursor: str | None) -> a.EventList:
        """Stored events newest first; ``cursor`` is a previous page's ``next_cursor``."""
        after = views.read_event_cursor(cursor) if cursor else None
        async with self.store.read() as tx:
            rows = await tx.events.page(name, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"events": [{"id": r.id, "name": r.name, "ts": r.ts,
                            "runs": json.loads(r.run_ids_json)} for r in rows],
                "next_cursor": views.event_cursor(rows[-1].ts, rows[-1].id)
                if more and rows else None}

    async def get_event(self, event_id: str) -> a.EventDetail:
        """An event, its data and the runs it started (their functions and statuses read
        in one query)."""
        async with self.store.read() as tx:
            row = await tx.events.get(event_id)
            if row is None:
                raise NotFound(f"no event {event_id!r}", "id")
            ids: list[str] = json.loads(row.run_ids_json)
            found = await tx.runs.get_many(ids)
        runs: list[a.EventRun] = [
            {"id": r.id, "function": r.function, "status": cast(p.RunStatus, r.status)}
            for r in (found.get(i) for i in ids) if r is not None]
        return {"id": row.id, "name": row.name, "data": json.loads(row.data_json),
                "ts": row.ts, "runs": runs}

    # -- control ----------------------------------------------------------------------------

    async def cancel_run(self, run_id: str, reason: str | None = None) -> a.CancelledRun:
        cancelled = await self.hub.transact(
            lambda tx, fx: control.cancel_one(tx, run_id, reason, time.time(), fx))
        return {"id": run_id, "cancelled": cancelled}

    async def cancel_runs(self, f: RunFilter, reason: str | None = None) -> a.CancelledRuns:
        return {"cancelled": await self.hub.transact(
            lambda tx, fx: control.cancel_matching(tx, f, reason, time.time(), fx))}

    async def replay_run(self, run_id: str, start: str = "failed_step",
                         input: Any = ...) -> a.ReplayedRun:
        new_input = None if input is ... else input_json(input)
        await self.hub.transact(
            lambda tx, fx: control.replay_one(tx, run_id, start, new_input, time.time(), fx))
        return {"id": run_id, "status": "replayed", "from": cast(a.From, start)}

    async def replay_runs(self, f: RunFilter, start: str = "failed_step") -> a.ReplayedRuns:
        return {"replayed": await self.hub.transact(
            lambda tx, fx: control.replay_matching(tx, f, start, time.time(), fx))}

    # -- schedules and crons ----------------------------------------------------------------

    async def create_schedule(self, function: str, at: float, input: Any,
                              priority: int | None = None) -> a.Schedule:
        return await self.schedules.create_schedule(function, at, input, priority)

    async def list_schedules(self, function: str | None, limit: int) -> list[a.Schedule]:
        return await self.schedules.list_schedules(function, limit)

    async def get_schedule(self, sid: str) -> a.Schedule:
        return await self.schedules.get_schedule(sid)

    async def delete_schedule(self, sid: str) -> None:
        await self.schedules.delete_schedule(sid)

    async def create_cron(self, function: str, expression: str, timezone: str,
                          input: Any) -> a.Cron:
        return await self.schedules.create_cron(function, expression, timezone, input)

    async def list_crons(self, function: str | None) -> list[a.Cron]:
        return await self.schedules.list_crons(function)

    async def delete_cron(self, cid: str) -> None:
        await self.schedules.delete_cron(cid)

    async def get_cron(self, cid: str) -> a.Cron:
        return await self.schedules.get_cron(cid)

    async def pause_cron(self, cid: str) -> a.Cron:
        return await self.schedules.pause_cron(cid)

    async def resume_cron(self, cid: str) -> a.Cron:
        return await self.schedules.resume_cron(cid)

    # -- webhooks ---------------------------------------------------------------------------

    async def create_webhook(self, spec: SourceSpec) -> a.WebhookSourceWithSecret:
        return await self.webhooks.create(spec)

    async def list_webhooks(self) -> list[a.WebhookSource]:
        return await self.webhooks.list_sources()

    async def get_webhook(self, source_id: str) -> a.WebhookSource:
        return await self.webhooks.get(source_id)

    async def rotate_webhook(self, source_id: str, secret: str | None,
                             grace: float) -> a.WebhookSourceWithSecret:
        return await self.webhooks.rotate(source_id, secret, grace)

    async def delete_webhook(self, source_id: str) -> None:
        await self.webhooks.delete(source_id)

    async def deliver_webhook(self, source_id: str, headers: Mapping[str, str],
                              content_type: str, body: bytes) -> a.WebhookDelivered:
        return await self.webhooks.deliver(source_id, headers, content_type, body)

    # -- runs -------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> a.Run:
        view = await self._run_view(run_id, lambda run: True)
        assert view is not None
        return view

    async def _run_view(self, run_id: str, whole: Callable[[RunRow], bool]) -> a.Run | None:
        """The run as the API shows it if ``whole(run)`` (its steps and children read on
        the same connection), else None; ``NotFound`` if there is no such run."""
        async with self.store.read() as tx:
            run = await tx.runs.get(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", "id")
            if not whole(run):
                return None
            steps = (await tx.steps.memo([run_id]))[run_id]
        info = await self.registry.get(run.function)
        workflow = info is not None and info.kind == "workflow" and run.task is None
        children: Sequence[RunCore] = []
        if workflow or info is None or _may_have_children(run, steps):
            async with self.store.read() as tx:
                children = await tx.runs.children_of(run_id)
        declared = declared_tasks(info.config) if workflow and info is not None else None
        return views.run_detail(run, steps, children, declared)

    async def list_runs(
        self, function: str | None, status: str | None, limit: int, cursor: str | None,
        *, since: float | None = None, until: float | None = None,
        event_id: str | None = None,
    ) -> a.RunList:
        """A page of runs, newest first: created in ``[since, until)``; with ``event_id``,
        only the runs that event started (``NotFound`` on ``event_id`` if no such event)."""
        async with self.store.read() as tx:
            ids = None
            if event_id is not None:
                found = (await tx.events.run_ids([event_id])).get(event_id)
                if found is None:
                    raise NotFound(f"no event {event_id!r}", "event_id")
                ids = [str(i) for i in json.loads(found)]
            rows = await tx.runs.page(function, status, limit + 1, cursor,
                                      since=since, until=until, ids=ids)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"runs": [views.run_summary(r) for r in rows],
                "next_cursor": rows[-1].id if more and rows else None}

    async def count_runs(self, function: str | None, since: float | None = None,
                         until: float | None = None) -> a.RunCounts:
        """Runs per status (and in all) of ``function`` (None: every function), created
        in ``[since, until)``."""
        async with self.store.read() as tx:
            counts = await tx.runs.counts(function, since, until)
        return views.run_counts(counts)

    async def wait_run(self, run_id: str, timeout: float, *, fresh: bool = False) -> a.Run:
        """The run (as ``get_run`` shows it) once it has ended, or as it is after
        ``timeout``. ``fresh``: this replica has just created the run (``POST /runs?wait``):
        it cannot have ended before the watch unless this replica ended it, which the
        watch knows (``Notifier.watch``), so the first look at the database is skipped."""
        fut = self.notifier.watch(run_id)
        try:
            deadline = time.monotonic() + timeout
            look = not fresh or fut.done()
            while True:
                if look:
                    view = await self._run_view(
                        run_id, lambda run: run.status in TERMINAL
                        or deadline - time.monotonic() <= 0)
                    if view is not None:
                        return view
                look = True
                left = deadline - time.monotonic()
                # other replicas end runs too: look again at least every second
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), max(0.0, min(left, 1.0)))
                if fut.done():
                    self.notifier.unwatch(run_id, fut)
                    fut = self.notifier.watch(run_id)
        finally:
            self.notifier.unwatch(run_id, fut)

    # -- API keys ---------------------------------------------------------------------------

    async def create_key(self, name: str, scopes: Sequence[a.Scope]) -> a.CreatedApiKey:
        return await self.keys.create(name, scopes)

    async def list_keys(self) -> list[a.ApiKey]:
        return await self.keys.list()

    async def revoke_key(self, key_id: str) -> None:
        await self.keys.revoke(key_id)
