"""Runs waiting for events, found by (event name, match key) without scanning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import delete, select

from orchestrator.store.base import Repo, ids_param, prepared
from orchestrator.store.models import waits
from orchestrator.store.rows import MatchedWait, TakenWait, WaitInsert
from sdk import protocol as p

_REMOVE = prepared(lambda b: delete(waits).where(waits.c.run_id.in_(ids_param())))


class WaitsRepo(Repo):
    async def add(self, rows: Sequence[WaitInsert]) -> None:
        if rows:
            await self.conn.execute(waits.insert(), rows)

    async def take_matching(self, event: Mapping[str, Any]) -> list[MatchedWait]:
        """Remove and return the waits this event satisfies."""
        name = event["name"]
        field_sets = await self.conn.execute(
            select(waits.c.match_fields).where(waits.c.event == name).distinct()
        )
        keys = {
            k
            for (fields,) in field_sets
            if (k := p.event_match_key(event, fields)) is not None
        }
        if not keys:
            return []
        stmt = (
            delete(waits)
            .where(waits.c.event == name, waits.c.match_key.in_(keys))
            .returning(waits.c.run_id, waits.c.step_id, waits.c.seq, waits.c.name,
                       waits.c.created_at, waits.c.expires_at, waits.c.purpose)
        )
        return cast("list[MatchedWait]", list(await self.conn.execute(stmt)))

    async def take_expired(self, run_ids: list[str], now: float) -> list[TakenWait]:
        if not run_ids:
            return []
        stmt = (
            delete(waits)
            .where(waits.c.run_id.in_(run_ids), waits.c.expires_at <= now,
                   waits.c.purpose == "wait")
            .returning(waits.c.run_id, waits.c.step_id, waits.c.seq, waits.c.name,
                       waits.c.created_at, waits.c.expires_at)
        )
        return cast("list[TakenWait]", list(await self.conn.execute(stmt)))

    async def remove(self, run_ids: list[str]) -> None:
        if run_ids:
            await self.conn.execute(_REMOVE(self.backend), {"ids": run_ids})
