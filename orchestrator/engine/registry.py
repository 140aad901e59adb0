"""Registered functions, cached in memory and reloaded from the store on a miss."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.store import Store
from sdk.function import Retry


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    app_id: str
    url: str
    kind: str
    config: dict[str, Any]
    retry: Retry


class Registry:
    def __init__(self, store: Store, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._fns: dict[str, FunctionInfo] = {}
        self._loaded_at = 0.0

    async def reload(self) -> None:
        async with self.store.read() as tx:
            rows = await tx.apps.list_functions()
        fns = {}
        for r in rows:
            cfg = json.loads(r.config_json)
            fns[r.name] = FunctionInfo(
                r.name, r.app_id, r.url, r.kind, cfg, Retry.from_wire(cfg.get("retry"))
            )
        self._fns = fns
        self._loaded_at = time.monotonic()

    async def get(self, name: str) -> FunctionInfo | None:
        return (await self.get_many({name})).get(name)

    async def get_many(self, names: set[str]) -> dict[str, FunctionInfo]:
        if any(n not in self._fns for n in names) or time.monotonic() - self._loaded_at > self.ttl:
            await self.reload()
        return {n: self._fns[n] for n in names if n in self._fns}
