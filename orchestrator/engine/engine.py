"""The engine's facade: what the REST API (and the CLI) may ask of the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from orchestrator.config import Settings
from orchestrator.engine import views
from orchestrator.engine.claim import Lease
from orchestrator.engine.dispatcher import Dispatcher
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.reducer import Reducer
from orchestrator.engine.registry import Registry
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.store import Store
from sdk import protocol as p
from sdk.function import NAME_RE, Retry

log = logging.getLogger("orchestrator")

TERMINAL = ("completed", "failed", "cancelled")


def _validate_functions(configs: Any) -> list[dict[str, Any]]:
    if not isinstance(configs, list):
        raise Invalid("the app's introspection has no function list", "url")
    seen: set[str] = set()
    out = []
    for c in configs:
        name = c.get("name") if isinstance(c, Mapping) else None
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise Invalid(f"the app declares an invalid function name {name!r}", "functions")
        if name in seen:
            raise Invalid(f"the app declares function {name!r} twice", "functions")
        seen.add(name)
        for t in c.get("triggers", []):
            ev = t.get("event") if isinstance(t, Mapping) else None
            if ev is not None and (not isinstance(ev, str) or not NAME_RE.match(ev)):
                raise Invalid(f"function {name!r} has an invalid trigger {t!r}", "functions")
        try:
            Retry.from_wire(c.get("retry"))
        except (TypeError, ValueError) as exc:
            raise Invalid(f"function {name!r} has an invalid retry policy: {exc}",
                          "functions") from None
        out.append(dict(c))
    return out


class Engine:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        if not settings.signing_key:
            raise ValueError("a signing key is required (DURABLE_SIGNING_KEY)")
        self.settings = settings
        self.store = Store(settings.database_url)
        self.notifier = Notifier()
        self.registry = Registry(self.store)
        self.signer = p.Signer(settings.signing_key, settings.signing_key_fallback)
        self.invoker = Invoker(self.signer, timeout=settings.call_timeout,
                               pool_size=settings.pool_per_app, transport=transport)
        self.reducer = Reducer(self.store, self.registry, self.notifier, settings)
        self.dispatcher = Dispatcher(self.store, self.registry, self.invoker, self.reducer,
                                     self.notifier, settings)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False

    async def start(self) -> None:
        await self.store.open()
        await self.registry.reload()
        self._tasks = [asyncio.create_task(self.reducer.run(), name="reducer"),
                       asyncio.create_task(self.dispatcher.run(), name="dispatcher")]
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.invoker.close()
        await self.store.close()

    async def healthy(self) -> bool:
        try:
            async with self.store.read() as tx:
                await tx.queue.next_wakeup()
        except Exception:
            return False
        return self.ready

    # -- apps -------------------------------------------------------------------------------

    async def register_app(self, url: str) -> dict[str, Any]:
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
        configs = _validate_functions(info.get("functions"))
        now = time.time()
        async with self.store.write() as tx:
            owners = await tx.apps.owners([c["name"] for c in configs])
            taken = sorted(n for n, a in owners.items() if a != app_id)
            if taken:
                raise Conflict(f"functions already registered by another app: {taken}",
                               "functions")
            await tx.apps.save(app_id, url, str(info.get("sdk", "")), configs, now)
        await self.registry.reload()
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
                 "functions": by_app.get(a.id, [])} for a in apps]

    async def list_functions(self) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            fns = await tx.apps.list_functions()
        return [{**json.loads(f.config_json), "app_id": f.app_id, "url": f.url} for f in fns]

    # -- triggers ---------------------------------------------------------------------------

    async def start_run(
        self, function: str, input: Any, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        if await self.registry.get(function) is None:
            raise NotFound(f"no function named {function!r} is registered", "function")
        input_json = p.dumps(input).decode()
        if len(input_json) > p.MAX_STEP_OUTPUT_BYTES:
            raise Invalid(f"input exceeds {p.MAX_STEP_OUTPUT_BYTES} bytes", "input")
        lease = self.dispatcher.lease()
        async with self.store.write() as tx:
            [rid] = await create_runs(
                tx, [NewRun(function, input_json, idempotency_key=idempotency_key)],
                time.time(), lease,
            )
        self._handoff(lease)
        return {"id": rid}

    def _handoff(self, lease: Lease | None) -> None:
        if lease is not None and lease.claims:
            self.dispatcher.adopt(lease.claims)
        else:
            self.notifier.wake_dispatcher()

    async def send_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        lease = self.dispatcher.lease()
        async with self.store.write() as tx:
            res = await ingest_events(tx, events, time.time(), lease)
        self._handoff(lease)
        if res.woke:
            self.notifier.wake_dispatcher()
        return {"ids": res.event_ids, "runs": res.run_ids}

    # -- runs -------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> dict[str, Any]:
        async with self.store.read() as tx:
            run = await tx.runs.get(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", "id")
            steps = (await tx.steps.memo([run_id]))[run_id]
            children = await tx.runs.children_of(run_id)
        return views.run_detail(run, steps, children)

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
        """The run (summary and output) once it has ended, or as it is after ``timeout``."""
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
                    return views.run_result(run)
                # other replicas end runs too: look again at least every second
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), min(left, 1.0))
                if fut.done():
                    self.notifier.unwatch(run_id, fut)
                    fut = self.notifier.watch(run_id)
        finally:
            self.notifier.unwatch(run_id, fut)
