"""Received events. An event id is its idempotency key: a duplicate is ignored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import and_, bindparam, or_, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import events
from orchestrator.store.rows import EventInsert, EventRow, EventRunIds


def recent_query(name: str, since: float, limit: int) -> Any:
    """``EventsRepo.recent``'s statement (tests EXPLAIN it): a range of
    ``ix_events_name_ts`` (name, then ts from ``since``) read backwards, stopping after
    ``limit`` rows. (PostgreSQL's planner may read the window through ``ix_events_ts``
    instead when its statistics say most events bear this name: then most of the window
    is this name's events anyway; old events are read by neither.)"""
    return (select(events).where(events.c.name == name, events.c.ts >= since)
            .order_by(events.c.ts.desc()).limit(limit))


class EventsRepo(Repo):
    async def insert_new(self, rows: Sequence[EventInsert]) -> set[str]:
        """Insert events; return the ids that were new (the others are duplicates)."""
        if not rows:
            return set()
        # one statement: RETURNING gives the rows inserted, not those ON CONFLICT skipped
        # (an id repeated within ``rows`` is inserted once)
        res = await self.conn.execute(
            self.backend.insert(events).values(rows)
            .on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
        )
        return {r[0] for r in res}

    async def run_ids(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = await self.conn.execute(
            select(events.c.id, events.c.run_ids_json).where(events.c.id.in_(ids))
        )
        return {r.id: r.run_ids_json for r in rows}

    async def set_run_ids(self, rows: Sequence[EventRunIds]) -> None:
        """rows of {eid, run_ids_json}."""
        if rows:
            await self.conn.execute(
                update(events)
                .where(events.c.id == bindparam("eid"))
                .values(run_ids_json=bindparam("run_ids_json")),
                rows,
            )

    async def page(self, name: str | None, limit: int,
                   cursor: tuple[float, str] | None) -> list[EventRow]:
        """Events newest first (by ``ts``, then id), ``limit`` of them; ``cursor``: the
        (ts, id) of the last event of the previous page, to start after it."""
        q = select(events)
        if name:
            q = q.where(events.c.name == name)
        if cursor is not None:
            ts, eid = cursor
            q = q.where(or_(events.c.ts < ts, and_(events.c.ts == ts, events.c.id < eid)))
        q = q.order_by(events.c.ts.desc(), events.c.id.desc()).limit(limit)
        return cast("list[EventRow]", list(await self.conn.execute(q)))

    async def lock_names(self, names: Sequence[str], *, shared: bool) -> None:
        """Serialize, per event name, storing events (``shared``: they do not exclude each
        other) against a wait's lookback (exclusive), until the transaction ends: either
        the lookback sees the event or the event's ``take_matching`` sees the wait
        (docs/flow-control.md, "Wait lookback"). Nothing on SQLite: one writer."""
        keys = [f"durable.lookback:{name}" for name in sorted(set(names))]
        if not keys:
            return
        if shared:
            stmts = [self.backend.lock_shared(keys)]
        else:
            stmts = [self.backend.lock(k) for k in keys]
        for stmt in stmts:
            if stmt is not None:
                await self.conn.execute(stmt)

    async def recent(self, name: str, since: float, limit: int) -> list[EventRow]:
        """The newest ``limit`` events named ``name`` with ``ts >= since``, newest first:
        a range of ``ix_events_name_ts`` read backwards, however many older events there
        are."""
        return cast("list[EventRow]",
                    list(await self.conn.execute(recent_query(name, since, limit))))

    async def get(self, eid: str) -> EventRow | None:
        return cast("EventRow | None", (await self.conn.execute(
            select(events).where(events.c.id == eid))).first())
