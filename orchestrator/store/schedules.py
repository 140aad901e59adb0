"""One-off scheduled runs and cron triggers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import delete, func, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import crons, schedules
from orchestrator.store.rows import CronInsert, CronRow, ScheduleInsert, ScheduleRow


class SchedulesRepo(Repo):
    async def add(self, row: ScheduleInsert) -> None:
        await self.conn.execute(schedules.insert(), [row])

    async def get(self, sid: str) -> ScheduleRow | None:
        return cast("ScheduleRow | None", (await self.conn.execute(
            select(schedules).where(schedules.c.id == sid))).first())

    async def pending(self, function: str | None, limit: int) -> list[ScheduleRow]:
        q = select(schedules).where(schedules.c.run_id.is_(None))
        if function:
            q = q.where(schedules.c.function == function)
        return cast("list[ScheduleRow]",
                    list(await self.conn.execute(q.order_by(schedules.c.at).limit(limit))))

    async def remove(self, sid: str) -> int:
        res = await self.conn.execute(
            delete(schedules).where(schedules.c.id == sid, schedules.c.run_id.is_(None))
        )
        return int(res.rowcount)

    async def due(self, now: float, limit: int) -> list[ScheduleRow]:
        q = (select(schedules).where(schedules.c.run_id.is_(None), schedules.c.at <= now)
             .order_by(schedules.c.at).limit(limit).with_for_update(skip_locked=True))
        return cast("list[ScheduleRow]", list(await self.conn.execute(q)))

    async def fired(self, sid: str, run_id: str) -> None:
        await self.conn.execute(
            update(schedules).where(schedules.c.id == sid).values(run_id=run_id)
        )

    async def next_at(self) -> float | None:
        row = (await self.conn.execute(
            select(func.min(schedules.c.at)).where(schedules.c.run_id.is_(None)))).first()
        return None if row is None or row[0] is None else float(row[0])


class CronsRepo(Repo):
    async def add(self, row: CronInsert) -> None:
        await self.conn.execute(crons.insert(), [row])

    async def get(self, cid: str) -> CronRow | None:
        return cast("CronRow | None", (await self.conn.execute(
            select(crons).where(crons.c.id == cid))).first())

    async def all(self, function: str | None) -> list[CronRow]:
        q = select(crons)
        if function:
            q = q.where(crons.c.function == function)
        return cast("list[CronRow]",
                    list(await self.conn.execute(q.order_by(crons.c.function, crons.c.id))))

    async def remove(self, cid: str) -> int:
        res = await self.conn.execute(delete(crons).where(crons.c.id == cid))
        return int(res.rowcount)

    async def set_paused(self, cid: str, paused: bool,
                         next_fire_at: float | None = None) -> bool:
        """Pause or resume a cron (resuming with ``next_fire_at``, its first tick from
        now); False if there is no such cron."""
        values: dict[str, Any] = {"paused": paused}
        if not paused:
            values["next_fire_at"] = next_fire_at
        res = await self.conn.execute(update(crons).where(crons.c.id == cid).values(**values))
        return bool(res.rowcount)

    async def replace_code_crons(self, functions: list[str],
                                 rows: Sequence[CronInsert]) -> None:
        """Make the code-declared crons of ``functions`` exactly ``rows`` (by id), keeping
        the fire schedule of those that stay."""
        keep = {r["id"] for r in rows}
        existing = {r.id for r in await self.conn.execute(
            select(crons.c.id).where(crons.c.source == "code", crons.c.function.in_(functions)))}
        gone = existing - keep
        if gone:
            await self.conn.execute(delete(crons).where(crons.c.id.in_(gone)))
        new = [r for r in rows if r["id"] not in existing]
        if new:
            await self.conn.execute(crons.insert(), new)

    async def due(self, now: float, limit: int) -> list[CronRow]:
        q = (select(crons).where(crons.c.next_fire_at <= now).order_by(crons.c.next_fire_at)
             .limit(limit).with_for_update(skip_locked=True))
        return cast("list[CronRow]", list(await self.conn.execute(q)))

    async def advance(self, cid: str, expected: float, next_fire_at: float | None,
                      last_fire_at: float | None) -> bool:
        """Move a cron to its next fire time, if no other replica did it first."""
        values: dict[str, Any] = {"next_fire_at": next_fire_at}
        if last_fire_at is not None:
            values["last_fire_at"] = last_fire_at
        res = await self.conn.execute(
            update(crons).where(crons.c.id == cid, crons.c.next_fire_at == expected)
            .values(**values)
        )
        return bool(res.rowcount)

    async def next_at(self) -> float | None:
        row = (await self.conn.execute(select(func.min(crons.c.next_fire_at)))).first()
        return None if row is None or row[0] is None else float(row[0])
