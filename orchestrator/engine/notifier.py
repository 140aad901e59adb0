"""In-process signals: wake the dispatcher; tell long-pollers a run ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Notifier:
    def __init__(self) -> None:
        self.work = asyncio.Event()
        self.planned_wake = float("inf")
        """When the idle dispatcher next looks at the queue (inf: it is not idle)."""
        self._watchers: dict[str, set[asyncio.Future[None]]] = {}

    def wake_dispatcher(self) -> None:
        self.work.set()

    def due_at(self, t: float) -> None:
        """A queue row falls due at ``t``: wake the dispatcher if that is before it planned
        to look (it then plans its sleep again, to the new earliest due time)."""
        if t < self.planned_wake:
            self.work.set()

    def watch(self, run_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(run_id, set()).add(fut)
        return fut

    def unwatch(self, run_id: str, fut: asyncio.Future[None]) -> None:
        s = self._watchers.get(run_id)
        if s is not None:
            s.discard(fut)
            if not s:
                del self._watchers[run_id]

    def runs_ended(self, run_ids: Iterable[str]) -> None:
        for rid in run_ids:
            for fut in self._watchers.pop(rid, ()):
                if not fut.done():
                    fut.set_result(None)
