"""Flow control's state at run creation (issue 13): GCRA's theoretical arrival time per
throttle or rate-limit key (``flow_state``), and the run a key's triggers go to
(``flow_runs``: a debounced run not started yet, an open batch, a singleton's run).

Every read here locks the key's row for the rest of the caller's transaction: the row is
made if absent (``INSERT ... ON CONFLICT DO NOTHING``) then read ``FOR UPDATE``, so
concurrent triggers of one key (on any replica) take their turn. SQLite has one writer:
the transaction itself is the lock there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, or_, select, text, update

from orchestrator.store.base import Repo
from orchestrator.store.models import flow_runs, flow_state, queue, runs
from orchestrator.store.queue import rank
from sdk import protocol as p

TERMINAL = sorted(p.TERMINAL)


@dataclass(frozen=True)
class FlowSlot:
    """A ``flow_runs`` row, locked: the run a key's triggers go to."""

    run_id: str
    opened_at: float
    size: int
    created: bool
    """The row was made by this call (for ``run_id``): no earlier run holds the key."""


class FlowRepo(Repo):
    async def lock_keys(self, keys: Iterable[str]) -> None:
        """Take the keys' locks for the rest of the transaction, in sorted order, before
        any of their rows: a transaction touching several keys (a bulk trigger, a batch
        of events) then never waits for one while holding another that its waiter
        holds, so two cannot deadlock. PostgreSQL: transaction-scoped advisory locks on
        the keys' hashes (a collision only serializes two keys); SQLite has one writer."""
        if self.backend.name != "postgresql":
            return
        for key in sorted(set(keys)):
            await self.conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended("
                                         ":key, 13))"), {"key": key})

    async def lock_tat(self, key: str, now: float) -> tuple[float, float]:
        """The key's (tat, updated_at), locked. A key not seen before gets tat 0 (long
        past: its first trigger conforms)."""
        ins = self.backend.insert(flow_state).values(key=key, tat=0.0, updated_at=now)
        await self.conn.execute(ins.on_conflict_do_nothing(index_elements=["key"]))
        row = (await self.conn.execute(
            select(flow_state.c.tat, flow_state.c.updated_at)
            .where(flow_state.c.key == key).with_for_update())).one()
        return float(row.tat), float(row.updated_at)

    async def set_tat(self, key: str, tat: float, now: float) -> None:
        await self.conn.execute(update(flow_state).where(flow_state.c.key == key)
                                .values(tat=tat, updated_at=now))

    async def lock_slot(self, kind: str, key: str, run_id: str, now: float) -> FlowSlot:
        """The key's slot, locked; made for ``run_id`` (size 1, opened now) if absent."""
        ins = self.backend.insert(flow_runs).values(kind=kind, key=key, run_id=run_id,
                                                    opened_at=now, size=1)
        made = (await self.conn.execute(
            ins.on_conflict_do_nothing(index_elements=["kind", "key"])
            .returning(flow_runs.c.run_id))).first()
        if made is not None:
            return FlowSlot(run_id, now, 1, True)
        row = (await self.conn.execute(
            select(flow_runs.c.run_id, flow_runs.c.opened_at, flow_runs.c.size)
            .where(flow_runs.c.kind == kind, flow_runs.c.key == key)
            .with_for_update())).one()
        return FlowSlot(str(row.run_id), float(row.opened_at), int(row.size), False)

    async def set_slot(self, kind: str, key: str, run_id: str, opened_at: float,
                       size: int) -> None:
        await self.conn.execute(
            update(flow_runs).where(flow_runs.c.kind == kind, flow_runs.c.key == key)
            .values(run_id=run_id, opened_at=opened_at, size=size))

    async def pending(self, run_id: str) -> float | None:
        """When the run falls due, if it is still queued and its queue row unclaimed (no
        lease); None if not. Its queue row is locked, so a claim after this skips it
        (``FOR UPDATE SKIP LOCKED``) until the caller commits; a row another transaction
        holds is skipped here too (a claim taking it, an answer or a cancel changing
        it: the run is not pending), so a trigger never waits for a queue row."""
        row = (await self.conn.execute(
            select(queue.c.lease_owner, queue.c.due_at).where(queue.c.run_id == run_id)
            .with_for_update(skip_locked=True))).first()
        if row is None or row.lease_owner is not None:
            return None
        status = (await self.conn.execute(
            select(runs.c.status).where(runs.c.id == run_id))).scalar()
        return float(row.due_at) if status == p.RunStatus.QUEUED else None

    async def active(self, run_id: str) -> bool:
        """Whether the run exists and has not ended."""
        status = (await self.conn.execute(
            select(runs.c.status).where(runs.c.id == run_id))).scalar()
        return status is not None and status not in p.TERMINAL

    async def events_of(self, run_id: str) -> str | None:
        got = (await self.conn.execute(
            select(runs.c.events_json).where(runs.c.id == run_id))).scalar()
        return None if got is None else str(got)

    async def merge(self, run_id: str, input_json: str, event_json: str | None,
                    events_json: str | None, due_at: float) -> None:
        """A pending run takes a newer trigger: its input, event (and a batch's events);
        its queue row falls due at ``due_at``."""
        values: dict[str, str | None] = {"input_json": input_json, "event_json": event_json}
        if events_json is not None:
            values["events_json"] = events_json
        await self.conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
        await self.conn.execute(update(queue).where(queue.c.run_id == run_id)
                                .values(due_at=due_at, rank_at=rank(due_at, queue.c.priority)))

    async def hold(self, due: dict[str, float]) -> None:
        """Claimed rows given back, due again later (a throttled start held back): the
        lease released, the claim counter kept (it only grows)."""
        for run_id, at in due.items():
            await self.conn.execute(
                update(queue).where(queue.c.run_id == run_id)
                .values(due_at=at, rank_at=rank(at, queue.c.priority), lease_owner=None,
                        lease_expires_at=None))

    async def sweep(self, now: float, idle: float, limit: int) -> int:
        """Delete state that says nothing any more; how many rows. ``flow_state`` rows
        whose tat passed more than ``idle`` seconds ago (a tat in the past is the same as
        no row: the next trigger conforms either way), and ``flow_runs`` rows opened more
        than ``idle`` ago whose run has ended or is gone (the next trigger opens a new
        one either way). Rows another transaction holds are skipped."""
        old_state = (select(flow_state.c.key).where(flow_state.c.tat < now - idle)
                     .limit(limit).with_for_update(skip_locked=True))
        keys = [str(r[0]) for r in await self.conn.execute(old_state)]
        n = 0
        if keys:
            n += int((await self.conn.execute(
                delete(flow_state).where(flow_state.c.key.in_(keys),
                                         flow_state.c.tat < now - idle))).rowcount)
        live = exists().where(runs.c.id == flow_runs.c.run_id,
                              runs.c.status.not_in(TERMINAL))
        stale = (select(flow_runs.c.kind, flow_runs.c.key)
                 .where(flow_runs.c.opened_at < now - idle, ~live)
                 .limit(limit).with_for_update(skip_locked=True))
        slots = [(str(r[0]), str(r[1])) for r in await self.conn.execute(stale)]
        if slots:
            n += int((await self.conn.execute(delete(flow_runs).where(
                or_(*[and_(flow_runs.c.kind == k, flow_runs.c.key == key)
                      for k, key in slots]),
                flow_runs.c.opened_at < now - idle))).rowcount)
        return n
