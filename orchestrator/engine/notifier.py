"""In-process signals: wake the dispatcher; tell long-pollers a run ended. Between
replicas sharing a PostgreSQL database, the same signals travel as notifications
(``tell`` sends them, ``heard`` acts on another replica's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable


class Notifier:
    def __init__(self) -> None:
        self.work = asyncio.Event()
        self.planned_wake = float("inf")
        """When the idle dispatcher next looks at the queue (inf: it is not idle)."""
        self._watchers: dict[str, set[asyncio.Future[None]]] = {}
        self.broadcast: Callable[[str], None] | None = None
        """Sends a notification to the other replicas (None: there are none to tell, as
        on SQLite)."""
        self.listening = False
        """Whether this replica hears the others' notifications now (else it polls)."""
        self.reach = float("inf")
        """How far ahead (seconds) the other replicas look by themselves while they
        listen (their longest idle sleep): what falls due later needs no telling."""
        self.timers: Callable[[float], None] | None = None
        """Told of another replica's timer (the scheduler's ``poke_at``)."""
        self._told = {"due": float("-inf"), "timer": float("-inf")}
        self._ended: dict[str, None] = {}
        """The last ``RECENT`` runs this replica ended, oldest first: a watch set on one
        of them after its end is already done (see ``watch``)."""

    def wake_dispatcher(self) -> None:
        self.work.set()

    def due_at(self, t: float) -> None:
        """A queue row falls due at ``t``: wake the dispatcher if that is before it planned
        to look (it then plans its sleep again, to the new earliest due time)."""
        if t < self.planned_wake:
            self.work.set()

    def tell(self, due: float | None = None, timer: float | None = None) -> None:
        """Tell the other replicas, in one notification, that a queue row falls due (or a
        lease expires) at ``due`` and a deadline, schedule or cron at ``timer`` (0: they
        changed). Nothing is sent for a time beyond their reach (they look before it
        anyway) or at or after a time told before that has not come yet (they look
        again then, and then see this one in the database)."""
        if self.broadcast is None:
            return
        now = time.time()
        parts = []
        for kind, t in (("due", due), ("timer", timer)):
            if t is None or t >= now + self.reach:
                continue
            if now <= self._told[kind] <= t:
                continue
            self._told[kind] = t
            parts.append(f"{kind} {t:.3f}")
        if parts:
            self.broadcast(" ".join(parts))

    def heard(self, payload: str) -> None:
        """Another replica's notification (``tell``): plan again if it is earlier."""
        words = payload.split()
        for kind, at in zip(words[::2], words[1::2], strict=False):
            t = float(at)
            if kind == "due":
                self.due_at(t)
            elif kind == "timer" and self.timers is not None:
                self.timers(t)

    def listen_state(self, up: bool) -> None:
        """The notification connection came up or went down: the dispatcher plans its
        sleep again (long while it listens, a short poll while it cannot)."""
        self.listening = up
        self.work.set()

    RECENT = 4096

    def watch(self, run_id: str) -> asyncio.Future[None]:
        """A future done once this replica ends the run; done already if it ended it
        among its last ``RECENT`` runs (so that a waiter that has not read the run yet,
        as ``POST /runs?wait`` does not, cannot miss an end that came first)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if run_id in self._ended:
            fut.set_result(None)
            return fut
        self._watchers.setdefault(run_id, set()).add(fut)
        return fut

    def unwatch(self, run_id: str, fut: asyncio.Future[None]) -> None:
        s = self._watchers.get(run_id)
        if s is not None:
            s.discard(fut)
            if not s:
                del self._watchers[run_id]

    def runs_ended(self, run_ids: Iterable[str]) -> None:
        ended = self._ended
        for rid in run_ids:
            ended[rid] = None
            if len(ended) > self.RECENT:
                del ended[next(iter(ended))]
            for fut in self._watchers.pop(rid, ()):
                if not fut.done():
                    fut.set_result(None)
