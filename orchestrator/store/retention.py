"""Retention: finding ended runs past their age and deleting them (with their steps,
waits, queue rows and the schedules that fired them), and old events, a batch at a
time. Every query is served by an index: ``ix_runs_function_ended`` (function,
ended_at), ``ix_runs_function_id`` for the function names, ``ix_events_ts``, and the
primary keys or ``ix_schedules_run_id`` of what goes with a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, exists, or_, select

from orchestrator.store.base import Repo
from orchestrator.store.models import events, queue, runs, schedules, steps, waits
from sdk import protocol as p

TERMINAL = sorted(p.TERMINAL)

_parent = runs.alias("parent")


def expired_query(functions: Sequence[str], cutoff: float, limit: int) -> Select[Any]:
    """The ids of ``functions``' runs ended before ``cutoff`` whose parent is not active
    (a range of ``ix_runs_function_ended`` per function)."""
    parent_active = exists().where(_parent.c.id == runs.c.parent_id,
                                   _parent.c.status.not_in(TERMINAL))
    return (select(runs.c.id)
            .where(runs.c.function.in_(list(functions)), runs.c.ended_at < cutoff,
                   runs.c.status.in_(TERMINAL),
                   or_(runs.c.parent_id.is_(None), ~parent_active))
            .limit(limit)
            .with_for_update(skip_locked=True))


class RetentionRepo(Repo):
    async def function_names(self) -> list[str]:
        """The distinct functions of the stored runs: one index seek per name (a loose
        scan of ``ix_runs_function_id``), never a pass over the runs."""
        names: list[str] = []
        while True:
            q = select(runs.c.function).order_by(runs.c.function).limit(1)
            if names:
                q = q.where(runs.c.function > names[-1])
            row = (await self.conn.execute(q)).first()
            if row is None:
                return names
            names.append(str(row[0]))

    async def expired(self, groups: Sequence[tuple[Sequence[str], float]],
                      limit: int) -> list[str]:
        """Ids of at most ``limit`` runs, for each (functions, cutoff) group: runs of those
        functions that ended before the cutoff and whose parent, if any, has ended too
        or is gone (an active parent may still gather its ended children). On
        PostgreSQL they are locked, skipping rows another transaction holds (a replay, a
        sweep on another replica)."""
        out: list[str] = []
        for functions, cutoff in groups:
            if len(out) >= limit:
                break
            q = expired_query(functions, cutoff, limit - len(out))
            out += [str(r[0]) for r in await self.conn.execute(q)]
        return out

    async def delete_runs(self, ids: Sequence[str]) -> list[tuple[str, str]]:
        """Delete these runs if they are still ended (a replay since may have reset one),
        with their steps, waits and queue rows, and the fired one-off schedules that
        started them; (id, function) of each run deleted."""
        if not ids:
            return []
        gone = [(str(r[0]), str(r[1])) for r in await self.conn.execute(
            delete(runs)
            .where(runs.c.id.in_(list(ids)),
                   and_(runs.c.status.in_(TERMINAL), runs.c.ended_at.is_not(None)))
            .returning(runs.c.id, runs.c.function))]
        if gone:
            rids = [rid for rid, _ in gone]
            for table in (steps, waits, queue, schedules):
                await self.conn.execute(delete(table).where(table.c.run_id.in_(rids)))
        return gone

    async def delete_events(self, before: float, limit: int) -> int:
        """Delete at most ``limit`` events received before ``before``; how many."""
        old = select(events.c.id).where(events.c.ts < before).limit(limit)
        res = await self.conn.execute(delete(events).where(events.c.id.in_(old)))
        return int(res.rowcount)
