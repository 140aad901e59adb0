"""Received events. An event id is its idempotency key: a duplicate is ignored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import events


class EventsRepo(Repo):
    async def insert_new(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert events; return the ids that were new (the others are duplicates)."""
        if not rows:
            return set()
        new: set[str] = set()
        ins = self.backend.insert(events)
        for row in rows:  # RETURNING with ON CONFLICT: one statement per event
            res = await self.conn.execute(
                ins.values(**row).on_conflict_do_nothing(index_elements=["id"])
                .returning(events.c.id)
            )
            new.update(r[0] for r in res)
        return new

    async def run_ids(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = await self.conn.execute(
            select(events.c.id, events.c.run_ids_json).where(events.c.id.in_(ids))
        )
        return {r.id: r.run_ids_json for r in rows}

    async def set_run_ids(self, rows: list[dict[str, Any]]) -> None:
        """rows of {eid, run_ids_json}."""
        if rows:
            await self.conn.execute(
                update(events)
                .where(events.c.id == bindparam("eid"))
                .values(run_ids_json=bindparam("run_ids_json")),
                rows,
            )
