"""One-off schedules and crons made through the API: creating, listing and deleting them;
pausing and resuming crons (those declared in code too).
Firing them is the ``scheduler``'s; crons declared in code come with their app
(``apps``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from orchestrator.engine import answers as a
from orchestrator.engine import cron, views
from orchestrator.engine.checks import check_priority, input_json, require_known
from orchestrator.engine.registry import Registry
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.ids import new_id
from orchestrator.store import CronInsert, ScheduleInsert, Store

PAST_TOLERANCE = 1.0
"""How far in the past (seconds) a schedule's time may be: clocks differ a little."""


class Schedules:
    def __init__(self, store: Store, registry: Registry, *,
                 changed: Callable[[], None]) -> None:
        self.store = store
        self.registry = registry
        self.changed = changed
        """Told when a schedule or cron was added (the scheduler looks again)."""

    async def create_schedule(self, function: str, at: float, input: Any,
                              priority: int | None = None) -> a.Schedule:
        await require_known(self.registry, {function})
        check_priority(priority, "priority")
        now = time.time()
        if at < now - PAST_TOLERANCE:
            raise Invalid(f"'at' ({views.iso(at)}) is in the past", "at")
        row: ScheduleInsert = {"id": new_id(), "function": function,
                               "input_json": input_json(input), "at": at, "run_id": None,
                               "created_at": now, "priority": priority}
        async with self.store.write() as tx:
            await tx.schedules.add(row)
        self.changed()
        return views.schedule_view(row)

    async def list_schedules(self, function: str | None, limit: int) -> list[a.Schedule]:
        async with self.store.read() as tx:
            rows = await tx.schedules.pending(function, limit)
        return [views.schedule_view(r._asdict()) for r in rows]

    async def get_schedule(self, sid: str) -> a.Schedule:
        async with self.store.read() as tx:
            row = await tx.schedules.get(sid)
        if row is None:
            raise NotFound(f"no schedule {sid!r}", "id")
        return views.schedule_view(row._asdict())

    async def delete_schedule(self, sid: str) -> None:
        """Delete a schedule that has not fired (one that has is refused: 409)."""
        async with self.store.write() as tx:
            row = await tx.schedules.get(sid)
            if row is None:
                raise NotFound(f"no schedule {sid!r}", "id")
            if row.run_id is not None:
                raise Conflict(f"schedule {sid} already fired as run {row.run_id}", "id")
            await tx.schedules.remove(sid)

    async def create_cron(self, function: str, expression: str, timezone: str,
                          input: Any) -> a.Cron:
        await require_known(self.registry, {function})
        try:
            trigger = cron.parse(expression, timezone)
        except cron.CronError as exc:
            raise Invalid(str(exc), exc.field) from None
        now = time.time()
        row: CronInsert = {"id": new_id(), "function": function, "expression": expression,
                           "timezone": timezone, "input_json": input_json(input),
                           "source": "api", "next_fire_at": cron.next_fire(trigger, now),
                           "last_fire_at": None, "created_at": now}
        async with self.store.write() as tx:
            await tx.crons.add(row)
        self.changed()
        return views.cron_view(row)

    async def list_crons(self, function: str | None) -> list[a.Cron]:
        async with self.store.read() as tx:
            rows = await tx.crons.all(function)
        return [views.cron_view(r._asdict()) for r in rows]

    async def delete_cron(self, cid: str) -> None:
        """Delete a cron made through the API (one declared in code is refused: 409)."""
        async with self.store.write() as tx:
            row = await tx.crons.get(cid)
            if row is None:
                raise NotFound(f"no cron {cid!r}", "id")
            if row.source == "code":
                raise Conflict(f"cron {cid} is declared in code: remove it there and "
                               f"re-sync the app", "id")
            await tx.crons.remove(cid)

    async def get_cron(self, cid: str) -> a.Cron:
        async with self.store.read() as tx:
            row = await tx.crons.get(cid)
        if row is None:
            raise NotFound(f"no cron {cid!r}", "id")
        return views.cron_view(row._asdict())

    async def pause_cron(self, cid: str) -> a.Cron:
        """Pause a cron (one declared in code too: a re-sync keeps it paused). Its ticks
        move on without firing."""
        async with self.store.write() as tx:
            if not await tx.crons.set_paused(cid, True):
                raise NotFound(f"no cron {cid!r}", "id")
        return await self.get_cron(cid)

    async def resume_cron(self, cid: str) -> a.Cron:
        """Resume a cron from its first tick after now: the ticks it missed while paused
        do not fire."""
        async with self.store.write() as tx:
            row = await tx.crons.get(cid)
            if row is None:
                raise NotFound(f"no cron {cid!r}", "id")
            nxt = row.next_fire_at
            try:
                nxt = cron.next_fire(cron.parse(row.expression, row.timezone), time.time())
            except cron.CronError:
                pass  # the scheduler disables it (and logs why) at its next tick
            await tx.crons.set_paused(cid, False, nxt)
        self.changed()
        return await self.get_cron(cid)
