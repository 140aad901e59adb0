"""Runs waiting for events, found by (event name, match key) without scanning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import String, TextClause, bindparam, delete, text

from orchestrator.store.base import Repo, ids_param, prepared
from orchestrator.store.models import waits
from orchestrator.store.rows import MatchedWait, TakenWait, WaitInsert
from sdk import protocol as p

_REMOVE = prepared(lambda b: delete(waits).where(waits.c.run_id.in_(ids_param())))

# The distinct field sets the waits for one event name match on, by a loose index scan of
# ix_waits_event_fields (event, match_fields): each step seeks the next field set after the
# previous one, so an event reads one index entry per field set (a few), never every wait
# of its name (``SELECT DISTINCT`` did: 100,000 rows for 100,000 runs waiting, one per
# customer). Same SQL on SQLite and PostgreSQL; one statement, so one snapshot on PostgreSQL,
# and nothing cached: a wait another replica has just committed is seen as before.
_FIELD_SETS = text(
    "WITH RECURSIVE f(fields) AS ("
    " SELECT (SELECT w.match_fields FROM waits AS w WHERE w.event = :event"
    " ORDER BY w.match_fields LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT w.match_fields FROM waits AS w WHERE w.event = :event"
    " AND w.match_fields > f.fields ORDER BY w.match_fields LIMIT 1)"
    " FROM f WHERE f.fields IS NOT NULL"
    ") SELECT fields FROM f WHERE fields IS NOT NULL"
)
_TAKE_FIELD_SETS = prepared(lambda b: _FIELD_SETS.columns(fields=String))
# then the waits of the keys the event has for those field sets (ix_waits_event_key)
_TAKE_KEYS = prepared(lambda b: (
    delete(waits)
    .where(waits.c.event == bindparam("event"), waits.c.match_key.in_(ids_param("keys")))
    .returning(waits.c.run_id, waits.c.step_id, waits.c.seq, waits.c.name,
               waits.c.created_at, waits.c.expires_at, waits.c.purpose)))


def field_sets_query(event_name: str) -> TextClause:
    """The statement ``take_matching`` reads an event name's distinct field sets with."""
    return _FIELD_SETS.bindparams(event=event_name)


class WaitsRepo(Repo):
    async def add(self, rows: Sequence[WaitInsert]) -> None:
        if rows:
            await self.conn.execute(waits.insert(), rows)

    async def take_matching(self, event: Mapping[str, Any]) -> list[MatchedWait]:
        """Remove and return the waits this event satisfies."""
        name = event["name"]
        field_sets = await self.conn.execute(_TAKE_FIELD_SETS(self.backend), {"event": name})
        keys = {
            k
            for (fields,) in field_sets
            if (k := p.event_match_key(event, fields)) is not None
        }
        if not keys:
            return []
        taken = await self.conn.execute(_TAKE_KEYS(self.backend),
                                        {"event": name, "keys": sorted(keys)})
        return cast("list[MatchedWait]", list(taken))

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
