"""Registered functions, cached in memory and reloaded from the store on a miss."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.store import Store
from sdk.function import Retry

log = logging.getLogger("orchestrator.registry")


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    app_id: str
    url: str
    kind: str
    config: dict[str, Any]
    retry: Retry
    signing_key: str | None = None
    """Its app's key set (None: the orchestrator's own key)."""
    signing_key_fallback: str | None = None
    budget_ms: int | None = None
    """Its app's time budget per call (None: ``Settings.budget_ms``)."""

    def task(self, name: str | None) -> dict[str, Any] | None:
        """The config of one of a workflow's tasks (its on_failure task included)."""
        if name is None:
            return None
        for t in self.config.get("tasks", []):
            if t["name"] == name:
                return dict(t)
        fail = self.config.get("on_failure")
        return dict(fail) if fail and fail["name"] == name else None

    def retry_for(self, task: str | None) -> Retry:
        t = self.task(task)
        return Retry.from_wire(t["retry"]) if t and t.get("retry") else self.retry

    def timeouts_for(self, task: str | None) -> tuple[float | None, float | None]:
        """(run timeout, queue timeout) in seconds, for the function or one of its tasks."""
        if not task:
            return self.config.get("timeout"), self.config.get("queue_timeout")
        cfg = self.task(task) or {}  # a task's runs wait at most the workflow's queue_timeout
        return cfg.get("timeout"), cfg.get("queue_timeout", self.config.get("queue_timeout"))


def _declares_concurrency(cfg: dict[str, Any]) -> bool:
    tasks = [*cfg.get("tasks", []), *([cfg["on_failure"]] if cfg.get("on_failure") else [])]
    return bool(cfg.get("concurrency")) or any(t.get("concurrency") for t in tasks)


class Registry:
    """Functions by name, from memory. Entries older than ``ttl`` (other replicas register
    apps too) are served while one reload runs in the background; only a name not known
    at all waits for a reload. Reloads are single-flight: callers share the one running
    (most callers are inside a transaction, and each reload takes a connection)."""

    def __init__(self, store: Store, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._fns: dict[str, FunctionInfo] = {}
        self._loaded_at = 0.0
        self._reloading: asyncio.Future[None] | None = None
        self._started = 0  # reloads begun
        self._applied = 0  # the latest-begun reload whose snapshot is in memory
        self.limited = False
        """Whether a function known declares a concurrency limit (its own or a task's)."""

    async def reload(self) -> None:
        """Read every function from the store. Reloads may overlap (a registration's own,
        after its commit, and a background one): a snapshot read by a reload begun
        earlier than the one in memory is dropped, so an older read never undoes a newer
        one (a function just registered would vanish until the next reload)."""
        self._started += 1
        mine = self._started
        async with self.store.read() as tx:
            rows = await tx.apps.list_functions()
        if mine < self._applied:
            return
        fns = {}
        for r in rows:
            cfg = json.loads(r.config_json)
            fns[r.name] = FunctionInfo(
                r.name, r.app_id, r.url, r.kind, cfg, Retry.from_wire(cfg.get("retry")),
                r.signing_key, r.signing_key_fallback, r.budget_ms,
            )
        self._fns = fns
        self._applied = mine
        self.limited = any(_declares_concurrency(f.config) for f in fns.values())
        self._loaded_at = time.monotonic()

    async def get(self, name: str) -> FunctionInfo | None:
        return (await self.get_many({name})).get(name)

    async def get_many(self, names: set[str]) -> dict[str, FunctionInfo]:
        if any(n not in self._fns for n in names):
            await asyncio.shield(self._reload_once())
        elif time.monotonic() - self._loaded_at > self.ttl:
            self._reload_once()  # in the background; this call is served from memory
        return {n: self._fns[n] for n in names if n in self._fns}

    async def all(self) -> dict[str, FunctionInfo]:
        """Every registered function, reloaded first if the cache is older than ``ttl``."""
        if time.monotonic() - self._loaded_at > self.ttl:
            await asyncio.shield(self._reload_once())
        return dict(self._fns)

    def _reload_once(self) -> asyncio.Future[None]:
        if self._reloading is None:
            fut = asyncio.ensure_future(self.reload())
            self._reloading = fut
            fut.add_done_callback(self._reloaded)
        return self._reloading

    def _reloaded(self, fut: asyncio.Future[None]) -> None:
        self._reloading = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # the next miss or stale read tries again
            log.warning("reloading the function registry failed: %r", exc)
            self.store.health.failed("registry reload", exc)
        else:
            self.store.health.ok("registry reload")
