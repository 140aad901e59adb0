"""The engine's facade: what the REST API (and the CLI) may ask of the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.config import Settings
from orchestrator.engine import cron, views
from orchestrator.engine.control import REPLAYABLE, replay
from orchestrator.engine.dispatcher import Dispatcher
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.lifecycle import Effects, Hub, cancel_run
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.probe import Prober
from orchestrator.engine.reducer import Reducer
from orchestrator.engine.registration import check_app_url, validate_functions
from orchestrator.engine.registry import Registry
from orchestrator.engine.scheduler import Scheduler
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.ids import new_id
from orchestrator.store import Store, Tx
from sdk import protocol as p
from sdk.function import NAME_RE

log = logging.getLogger("orchestrator")

TERMINAL = p.TERMINAL
MAX_BULK = 5000


@dataclass(frozen=True)
class RunSpec:
    """One run to start: a function (or workflow), its input, an optional idempotency key."""

    function: str
    input: Any = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class RunFilter:
    """Which runs a bulk operation applies to."""

    function: str | None = None
    statuses: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    limit: int = 1000


class Engine:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        if not settings.signing_key:
            raise ValueError("a signing key is required (DURABLE_SIGNING_KEY)")
        self.settings = settings
        self.store = Store(settings.database_url, pool_size=settings.db_pool_size)
        self.notifier = Notifier()
        self.registry = Registry(self.store)
        self.hub = Hub(self.store, self.registry, self.notifier)
        self.signer = p.Signer(settings.signing_key, settings.signing_key_fallback)
        self.invoker = Invoker(self.signer, timeout=settings.call_timeout,
                               pool_size=settings.pool_per_app, transport=transport)
        self.reducer = Reducer(self.store, self.hub, settings)
        self.dispatcher = Dispatcher(self.store, self.registry, self.invoker, self.reducer,
                                     self.hub, settings)
        self.scheduler = Scheduler(self.store, self.hub, cron_grace=settings.cron_grace)
        self.prober = Prober(self.store, self.invoker, settings)
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
                       asyncio.create_task(self.prober.run(), name="prober")]
        self.ready = True
        self.store.inject_faults()  # a test hook: nothing unless DURABLE_TEST_FAULT_RATE

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
        for close in (self.invoker.close, self.store.close):
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

    # -- apps -------------------------------------------------------------------------------

    async def register_app(self, url: str) -> dict[str, Any]:
        await check_app_url(url, allow_insecure=self.settings.allow_insecure_app_urls)
        try:
            info = await self.invoker.exchange(url, p.introspect_request())
        except httpx.HTTPError as exc:
            raise Invalid(f"could not reach the app at {url}: {exc!r}", "url") from None
        except p.SignatureError as exc:
            raise Invalid(f"the app's answer is not signed with our key: {exc}", "url") from None
        except (ValueError, p.ProtocolError) as exc:
            raise Invalid(f"the app's introspection answer is invalid: {exc}", "url") from None
        app_id = info.get("app_id")
        if not isinstance(app_id, str) or not NAME_RE.match(app_id):
            raise Invalid(f"the app reports an invalid app_id {app_id!r}", "url")
        configs, crons = validate_functions(info.get("functions"))
        now = time.time()
        for c in crons:
            c["next_fire_at"] = cron.next_fire(cron.parse(c["expression"], c["timezone"]), now)
            c["created_at"] = now
        names = [c["name"] for c in configs]
        async with self.store.write() as tx:
            await tx.apps.lock()
            other = await tx.apps.url_owner(url)
            if other is not None and other != app_id:
                raise Conflict(f"{url} is registered as app {other!r}, but the app there now "
                               f"reports the id {app_id!r}", "url")
            owners = await tx.apps.owners(names)
            taken = sorted(n for n, a in owners.items() if a != app_id)
            if taken:
                raise Conflict(f"functions already registered by another app: {taken}",
                               "functions")
            previous = [f.name for f in await tx.apps.list_functions() if f.app_id == app_id]
            await tx.apps.save(app_id, url, str(info.get("sdk", "")), configs, now)
            await tx.crons.replace_code_crons(sorted({*names, *previous}), crons)
        await self.registry.reload()
        self.scheduler.poke()
        log.info("registered app %s at %s with %d functions", app_id, url, len(configs))
        return {"id": app_id, "url": url, "sdk": info.get("sdk"), "synced_at": views.iso(now),
                "functions": configs}

    async def list_apps(self) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            apps = await tx.apps.list_apps()
            fns = await tx.apps.list_functions()
        by_app: dict[str, list[str]] = {}
        for f in fns:
            by_app.setdefault(f.app_id, []).append(f.name)
        return [{"id": a.id, "url": a.url, "sdk": a.sdk, "synced_at": views.iso(a.synced_at),
                 "functions": by_app.get(a.id, []), "status": a.status, "error": a.error}
                for a in apps]

    async def list_functions(self) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            fns = await tx.apps.list_functions()
        return [{**json.loads(f.config_json), "app_id": f.app_id, "url": f.url} for f in fns]

    # -- triggers ---------------------------------------------------------------------------

    async def _known(self, names: set[str], field: str = "function") -> None:
        fns = await self.registry.get_many(names)
        missing = sorted(names - set(fns))
        if missing:
            raise NotFound(f"no function named {missing[0]!r} is registered", field)

    @staticmethod
    def _input_json(value: Any, field: str = "input") -> str:
        try:
            data = p.dumps(value).decode()
        except (TypeError, ValueError) as exc:
            raise Invalid(f"input is not JSON: {exc}", field) from None
        if len(data) > p.MAX_STEP_OUTPUT_BYTES:
            raise Invalid(f"input exceeds {p.MAX_STEP_OUTPUT_BYTES} bytes", field)
        return data

    async def start_run(
        self, function: str, input: Any, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        [rid] = await self.start_runs([RunSpec(function, input, idempotency_key)])
        return {"id": rid}

    async def start_runs(self, specs: Sequence[RunSpec]) -> list[str]:
        """Start many runs in one transaction (all or none)."""
        if len(specs) > MAX_BULK:
            raise Invalid(f"at most {MAX_BULK} runs per request", "runs")
        await self._known({s.function for s in specs})
        new = [NewRun(s.function, self._input_json(s.input, f"runs[{i}].input"),
                      idempotency_key=s.idempotency_key) for i, s in enumerate(specs)]

        async def work(tx: Tx, fx: Effects) -> list[str]:
            return await create_runs(tx, new, time.time(), fx)

        return await self.hub.transact(work)

    async def send_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        async def work(tx: Tx, fx: Effects) -> dict[str, Any]:
            res = await ingest_events(tx, events, time.time(), fx)
            return {"ids": res.event_ids, "runs": res.run_ids, "duplicate": res.duplicate}

        return await self.hub.transact(work)

    # -- control ----------------------------------------------------------------------------

    async def cancel_run(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        async def work(tx: Tx, fx: Effects) -> list[str]:
            run = await tx.runs.lock(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", "id")
            if run.status in TERMINAL:
                raise Conflict(f"run {run_id} already ended {run.status}", "id")
            return await cancel_run(tx, run, p.RunStatus.CANCELLED, {
                "type": "Cancelled", "message": reason or "cancelled through the API"},
                time.time(), fx)

        return {"id": run_id, "cancelled": await self.hub.transact(work)}

    async def cancel_runs(self, f: RunFilter, reason: str | None = None) -> dict[str, Any]:
        statuses = [s for s in (f.statuses or ("queued", "running")) if s not in TERMINAL]

        async def work(tx: Tx, fx: Effects) -> list[str]:
            cancelled: list[str] = []
            now = time.time()
            for run in await tx.runs.matching(f.function, statuses, f.since, f.until, f.limit):
                fresh = await tx.runs.lock(run.id)
                if fresh is None or fresh.status in TERMINAL:
                    continue  # ended meanwhile (a parent cancelled just before, say)
                cancelled += await cancel_run(tx, fresh, p.RunStatus.CANCELLED, {
                    "type": "Cancelled", "message": reason or "cancelled in bulk"}, now, fx)
            return cancelled

        return {"cancelled": await self.hub.transact(work)}

    async def replay_run(self, run_id: str, start: str = "failed_step",
                         input: Any = ...) -> dict[str, Any]:
        input_json = None if input is ... else self._input_json(input)

        async def work(tx: Tx, fx: Effects) -> None:
            run = await tx.runs.lock(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", "id")
            if run.parent_id and run.task:
                raise Conflict("replay the workflow run, not one of its tasks", "id")
            await replay(tx, run, start, input_json, time.time(), fx)

        await self.hub.transact(work)
        return {"id": run_id, "status": "replayed", "from": start}

    async def replay_runs(self, f: RunFilter, start: str = "failed_step") -> dict[str, Any]:
        statuses = [s for s in (f.statuses or REPLAYABLE) if s in REPLAYABLE]

        async def work(tx: Tx, fx: Effects) -> list[str]:
            replayed: list[str] = []
            now = time.time()
            for run in await tx.runs.matching(f.function, statuses, f.since, f.until, f.limit):
                if run.parent_id and run.task:
                    continue  # tasks are replayed through their workflow
                fresh = await tx.runs.lock(run.id)
                if fresh is None or fresh.status not in REPLAYABLE:
                    continue
                await replay(tx, fresh, start, None, now, fx)
                replayed.append(run.id)
            return replayed

        return {"replayed": await self.hub.transact(work)}

    # -- schedules and crons ----------------------------------------------------------------

    async def create_schedule(self, function: str, at: float, input: Any) -> dict[str, Any]:
        await self._known({function})
        now = time.time()
        if at < now - 1.0:
            raise Invalid(f"'at' ({views.iso(at)}) is in the past", "at")
        row = {"id": new_id(), "function": function, "input_json": self._input_json(input),
               "at": at, "run_id": None, "created_at": now}
        async with self.store.write() as tx:
            await tx.schedules.add(row)
        self.scheduler.poke()
        return views.schedule_view(row)

    async def list_schedules(self, function: str | None, limit: int) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            rows = await tx.schedules.pending(function, limit)
        return [views.schedule_view(r._asdict()) for r in rows]

    async def get_schedule(self, sid: str) -> dict[str, Any]:
        async with self.store.read() as tx:
            row = await tx.schedules.get(sid)
        if row is None:
            raise NotFound(f"no schedule {sid!r}", "id")
        return views.schedule_view(row._asdict())

    async def delete_schedule(self, sid: str) -> None:
        async with self.store.write() as tx:
            row = await tx.schedules.get(sid)
            if row is None:
                raise NotFound(f"no schedule {sid!r}", "id")
            if row.run_id is not None:
                raise Conflict(f"schedule {sid} already fired as run {row.run_id}", "id")
            await tx.schedules.remove(sid)

    async def create_cron(self, function: str, expression: str, timezone: str,
                          input: Any) -> dict[str, Any]:
        await self._known({function})
        try:
            trigger = cron.parse(expression, timezone)
        except cron.CronError as exc:
            raise Invalid(str(exc), exc.field) from None
        now = time.time()
        row = {"id": new_id(), "function": function, "expression": expression,
               "timezone": timezone, "input_json": self._input_json(input), "source": "api",
               "next_fire_at": cron.next_fire(trigger, now), "last_fire_at": None,
               "created_at": now}
        async with self.store.write() as tx:
            await tx.crons.add(row)
        self.scheduler.poke()
        return views.cron_view(row)

    async def list_crons(self, function: str | None) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            rows = await tx.crons.all(function)
        return [views.cron_view(r._asdict()) for r in rows]

    async def delete_cron(self, cid: str) -> None:
        async with self.store.write() as tx:
            row = await tx.crons.get(cid)
            if row is None:
                raise NotFound(f"no cron {cid!r}", "id")
            if row.source == "code":
                raise Conflict(f"cron {cid} is declared in code: remove it there and "
                               f"re-sync the app", "id")
            await tx.crons.remove(cid)

    # -- runs -------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> dict[str, Any]:
        async with self.store.read() as tx:
            run = await tx.runs.get(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", "id")
            steps = (await tx.steps.memo([run_id]))[run_id]
            children = await tx.runs.children_of(run_id)
        declared = None
        if run.task is None:
            info = await self.registry.get(run.function)
            if info is not None and info.kind == "workflow":
                fail = (info.config.get("on_failure") or {}).get("name")
                declared = [t["name"] for t in info.config.get("tasks", [])] + (
                    [fail] if fail else [])
        return views.run_detail(run, steps, children, declared)

    async def list_runs(
        self, function: str | None, status: str | None, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        async with self.store.read() as tx:
            rows = await tx.runs.page(function, status, limit + 1, cursor)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"runs": [views.run_summary(r) for r in rows],
                "next_cursor": rows[-1].id if more and rows else None}

    async def wait_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        """The run (as ``get_run`` shows it) once it has ended, or as it is after
        ``timeout``."""
        fut = self.notifier.watch(run_id)
        try:
            deadline = time.monotonic() + timeout
            while True:
                async with self.store.read() as tx:
                    run = await tx.runs.get(run_id)
                if run is None:
                    raise NotFound(f"no run {run_id!r}", "id")
                left = deadline - time.monotonic()
                if run.status in TERMINAL or left <= 0:
                    return await self.get_run(run_id)  # the one representation of a run
                # other replicas end runs too: look again at least every second
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), min(left, 1.0))
                if fut.done():
                    self.notifier.unwatch(run_id, fut)
                    fut = self.notifier.watch(run_id)
        finally:
            self.notifier.unwatch(run_id, fut)
