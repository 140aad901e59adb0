"""The durable queue: at most one row per run, due at ``due_at``, claimed with a lease.

A claim takes due rows whose lease is absent or expired (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas never claim the same row; SQLite has one writer). ``claims``
counts claims and fences answers: an answer is applied only by the claim that holds it.

Rows are claimed in ``rank_at`` order: the due time aged by priority. A row of a function
with a concurrency limit carries its groups (``ckey1``/``ckey2``); the plain claim leaves
those to the limited claim (``engine/concurrency.py``), which leases only what fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Float,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)

from orchestrator.store.base import Repo, ids_param, prepared
from orchestrator.store.models import flow_leases, queue, runs
from orchestrator.store.rows import ClaimedRow, QueueFlow, QueueInsert
from sdk import flow

NEVER = 1e12  # a due time that never comes (year 33658)

PRIORITY_STEP_S = flow.PRIORITY_STEP_S  # a priority-p row ranks as due 60 (p - 1) s sooner


def rank(due_at: Any, priority: Any) -> Any:
    """A row's claim order (``rank_at``) for a due time and priority (values or columns)."""
    return due_at - (priority - 1) * PRIORITY_STEP_S


def _claimable(now: Any) -> Any:
    """Due (its rank first, so the rank index bounds the scan), not leased or its lease
    expired. A row ranks at most 9 minutes before its due time: the scan reads at most
    the high-priority rows falling due in that time beyond the due ones."""
    return (queue.c.rank_at <= now, queue.c.due_at <= now,
            or_(queue.c.lease_expires_at.is_(None), queue.c.lease_expires_at < now))


_CLAIM = prepared(lambda b: (
    update(queue)
    .where(queue.c.run_id.in_(
        select(queue.c.run_id)
        .where(queue.c.ckey1.is_(None), *_claimable(bindparam("now")))
        .order_by(queue.c.rank_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .scalar_subquery()))
    .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"),
            claims=queue.c.claims + 1)
    .returning(queue.c.run_id, queue.c.claims, queue.c.delivery_failures,
               queue.c.first_failure_at)
))
# a woken run claimed by the transaction that woke it (``lifecycle.wake_runs``): unless it
# is in a concurrency group (the limited claim counts those) or a live lease holds it
_WAKE_CLAIMED = prepared(lambda b: (
    update(queue)
    .where(queue.c.run_id == bindparam("rid"), queue.c.ckey1.is_(None),
           or_(queue.c.lease_expires_at.is_(None), queue.c.lease_expires_at < bindparam("now")))
    .values(due_at=bindparam("now"), rank_at=rank(bindparam("now"), queue.c.priority),
            lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"),
            claims=queue.c.claims + 1)
    .returning(queue.c.run_id, queue.c.claims, queue.c.delivery_failures,
               queue.c.first_failure_at)
))
# the limited claim (engine/concurrency.py): candidates in claim order, the slots their
# groups hold, then the lease of those that fit
_LIMITED = prepared(lambda b: (
    select(queue.c.run_id, queue.c.rank_at, queue.c.ckey1, queue.c.ckey2)
    .where(queue.c.ckey1.is_not(None), *_claimable(bindparam("now")),
           tuple_(queue.c.rank_at, queue.c.run_id) > tuple_(bindparam("after"),
                                                            bindparam("aid")))
    .order_by(queue.c.rank_at, queue.c.run_id)
    .limit(bindparam("limit"))))
# the slots held: every leased grouped row the limited claim recorded (a handful: the
# limited calls in flight, and those ended since), live if its row still holds that lease
# (read by primary key: a join could be planned as a scan of the queue)
_SLOTS = prepared(lambda b: select(flow_leases.c.run_id, flow_leases.c.claims,
                                   flow_leases.c.ckey1, flow_leases.c.ckey2))
_LIVE = prepared(lambda b: select(queue.c.run_id, queue.c.claims).where(
    queue.c.run_id.in_(ids_param()), queue.c.lease_expires_at >= bindparam("now")))
_FORGET_SLOTS = prepared(lambda b: delete(flow_leases).where(
    flow_leases.c.run_id.in_(ids_param())))


def _take_slots(b: Any) -> Any:
    ins = b.insert(flow_leases)
    return ins.on_conflict_do_update(index_elements=["run_id"], set_={
        "claims": ins.excluded.claims, "ckey1": ins.excluded.ckey1,
        "ckey2": ins.excluded.ckey2})


_TAKE_SLOTS = prepared(_take_slots)
_LEASE = prepared(lambda b: (
    update(queue)
    .where(queue.c.run_id.in_(
        select(queue.c.run_id)
        .where(queue.c.run_id.in_(ids_param()), *_claimable(bindparam("now")))
        .order_by(queue.c.run_id)
        .with_for_update(skip_locked=True)
        .scalar_subquery()))
    .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"),
            claims=queue.c.claims + 1)
    .returning(queue.c.run_id, queue.c.claims, queue.c.delivery_failures,
               queue.c.first_failure_at, queue.c.ckey1, queue.c.ckey2)
))


def _schedule(b: Any) -> Any:
    """``QueueRepo.schedule``: a row due at ``due``, its lease released (a row kept keeps
    its claims, priority and groups; its claim order follows its own priority)."""
    ins = b.insert(queue).values(
        run_id=bindparam("rid"), due_at=bindparam("due"), lease_owner=bindparam("no_owner"),
        lease_expires_at=bindparam("no_expiry"), claims=bindparam("claims"),
        delivery_failures=bindparam("failures"), first_failure_at=bindparam("first_failure"),
        priority=bindparam("priority"), ckey1=bindparam("ckey1"), ckey2=bindparam("ckey2"),
        rank_at=bindparam("rank"))
    return ins.on_conflict_do_update(index_elements=["run_id"], set_={
        "due_at": ins.excluded.due_at, "lease_owner": None, "lease_expires_at": None,
        "delivery_failures": ins.excluded.delivery_failures,
        "first_failure_at": ins.excluded.first_failure_at,
        "rank_at": rank(ins.excluded.due_at, queue.c.priority)})


# built for every sleep, resume and retry before it was prepared (~30% of the
# orchestrator's CPU while 1,000,000 runs went to sleep, bench/sleepers.py)
_SCHEDULE = prepared(_schedule)
LIMITED_LOCK = "durable:limited-claim"
_ADD = prepared(lambda b: queue.insert())
_FENCES = prepared(lambda b: select(queue.c.run_id, queue.c.lease_owner, queue.c.claims)
                   .where(queue.c.run_id.in_(ids_param())))
_REMOVE = prepared(lambda b: delete(queue).where(queue.c.run_id.in_(ids_param())))
_WAKEUP = prepared(lambda b: select(func.min(case(
    (queue.c.lease_expires_at.is_(None), queue.c.due_at), else_=queue.c.lease_expires_at))))

# every leased row is due (a row is claimed, or created claimed, once due, and a lease
# only moves its expiry): the leases are read over the ``due_at`` index among due rows.
# A row in a concurrency group that is already due is left out: it waits for a slot,
# which a call's end frees (its replica's dispatcher is woken then, ``Dispatcher.applied``)
# or a lease's expiry (read here); a grouped row due later is read (the first unleased
# row after ``now``), so the dispatcher wakes when it falls due.
_NEXT_DUE = prepared(lambda b: select(func.min(literal_column("t", Float))).select_from(union_all(
    select(func.min(queue.c.due_at).label("t"))
    .where(queue.c.lease_expires_at.is_(None), queue.c.ckey1.is_(None)),
    select(func.min(queue.c.due_at).label("t"))
    .where(queue.c.lease_expires_at.is_(None), queue.c.due_at > bindparam("now")),
    select(func.min(queue.c.lease_expires_at).label("t"))
    .where(queue.c.due_at <= bindparam("now"), queue.c.lease_expires_at.is_not(None)),
).subquery()))


class QueueRepo(Repo):
    async def claim(self, owner: str, now: float, lease_until: float,
                    limit: int) -> list[ClaimedRow]:
        return cast("list[ClaimedRow]", list(await self.conn.execute(_CLAIM(self.backend), {
            "now": now, "limit": limit, "owner": owner, "until": lease_until})))

    async def wake_claimed(self, run_id: str, now: float, owner: str,
                           lease_until: float) -> ClaimedRow | None:
        """Make a waiting run due now and lease it to ``owner`` at once, as a claim would;
        None if it cannot be (no row, a row in a concurrency group, or in flight): then
        ``wake`` it."""
        rows = list(await self.conn.execute(_WAKE_CLAIMED(self.backend), {
            "rid": run_id, "now": now, "owner": owner, "until": lease_until}))
        return cast("ClaimedRow", rows[0]) if rows else None

    async def limited_candidates(self, now: float, limit: int, after: tuple[float, str]
                                 ) -> list[tuple[str, float, str, str | None]]:
        """Claimable rows in a concurrency group, in claim order after ``after`` (a
        ``(rank_at, run_id)`` cursor): ``(run_id, rank_at, ckey1, ckey2)``."""
        rows = await self.conn.execute(_LIMITED(self.backend), {
            "now": now, "limit": limit, "after": after[0], "aid": after[1]})
        return [(r[0], float(r[1]), str(r[2]), r[3]) for r in rows]

    async def slots(self, now: float) -> dict[str, int]:
        """Slots held per concurrency group: the rows the limited claim leased that still
        hold that lease. Those that no longer do (answered, ended, expired, leases
        released at a start) are forgotten here."""
        held: dict[str, int] = {}
        slots = list(await self.conn.execute(_SLOTS(self.backend)))
        if not slots:
            return held
        live = {(r.run_id, r.claims) for r in await self.conn.execute(
            _LIVE(self.backend), {"ids": [s.run_id for s in slots], "now": now})}
        stale = []
        for s in slots:
            if (s.run_id, s.claims) not in live:
                stale.append(s.run_id)
                continue
            for g in (s.ckey1, s.ckey2):
                if g is not None:
                    held[g] = held.get(g, 0) + 1
        if stale:
            await self.conn.execute(_FORGET_SLOTS(self.backend), {"ids": stale})
        return held

    async def lease_limited(self, owner: str, run_ids: list[str], now: float,
                            lease_until: float) -> list[ClaimedRow]:
        """Lease these rows if still claimable (rows locked by another transaction right
        now are skipped: claimed on a later pass)."""
        if not run_ids:
            return []
        rows = list(await self.conn.execute(_LEASE(self.backend), {
            "ids": run_ids, "now": now, "owner": owner, "until": lease_until}))
        if rows:  # the slots they hold (a row leased again replaces its old slot)
            await self.conn.execute(_TAKE_SLOTS(self.backend), [
                {"run_id": r.run_id, "claims": r.claims, "ckey1": r.ckey1, "ckey2": r.ckey2}
                for r in rows])
        return cast("list[ClaimedRow]", rows)

    async def lock_limited(self) -> None:
        """Serialize limited claims across replicas until the transaction ends (PostgreSQL:
        an advisory lock; SQLite has one writer): two replicas must not both count a
        group's last free slot as theirs."""
        stmt = self.backend.lock(LIMITED_LOCK)
        if stmt is not None:
            await self.conn.execute(stmt)

    async def extend(self, owner: str, run_ids: list[str], lease_until: float,
                     now: float | None = None) -> int:
        """Renew ``owner``'s leases on these runs' rows; how many were renewed. With
        ``now``, a lease on a row in a concurrency group that expired is not revived: its
        slot may have been given to another run since (``engine/concurrency.py``).

        Lock order: a bare ``UPDATE ... WHERE run_id IN (...)`` locks rows in whatever
        order its plan visits them, and deadlocked on PostgreSQL (under 200 clients)
        against transactions locking the same rows in another order (the reducer's
        ``INSERT ... ON CONFLICT DO UPDATE``). So the rows are first locked by a
        ``SELECT ... ORDER BY run_id FOR UPDATE SKIP LOCKED`` (PostgreSQL locks in the
        sorted order, above the sort): a renewal never waits for a row lock, so it can
        take no part in a deadlock. A row skipped is being changed by another
        transaction right now (its answer applied, the run woken or ended); if it is
        still leased, the next renewal (a third of the TTL later) extends it."""
        if not run_ids:
            return 0
        live = () if now is None else (
            or_(queue.c.ckey1.is_(None), queue.c.lease_expires_at >= now),)
        locked = [r.run_id for r in await self.conn.execute(
            select(queue.c.run_id)
            .where(queue.c.run_id.in_(sorted(set(run_ids))), queue.c.lease_owner == owner,
                   *live)
            .order_by(queue.c.run_id)
            .with_for_update(skip_locked=True))]
        if locked:
            await self.conn.execute(
                update(queue)
                .where(queue.c.run_id.in_(locked), queue.c.lease_owner == owner)
                .values(lease_expires_at=lease_until)
            )
        return len(locked)

    async def leases(self, run_ids: list[str]) -> dict[str, tuple[str | None, float | None]]:
        """Who holds each row's lease, until when (for tests and diagnostics)."""
        rows = await self.conn.execute(
            select(queue.c.run_id, queue.c.lease_owner, queue.c.lease_expires_at)
            .where(queue.c.run_id.in_(run_ids)))
        return {r.run_id: (r.lease_owner, r.lease_expires_at) for r in rows}

    async def fences(self, run_ids: list[str]) -> dict[str, tuple[str | None, int]]:
        rows = await self.conn.execute(_FENCES(self.backend), {"ids": run_ids})
        return {r.run_id: (r.lease_owner, r.claims) for r in rows}

    async def add_many(self, rows: Sequence[QueueInsert]) -> None:
        """New rows for new runs: {run_id, due_at[, priority, ckey1, ckey2]} (every row
        with the same keys); their claim order (``rank_at``) is set here."""
        if rows:
            for r in rows:
                r["rank_at"] = rank(r["due_at"], r.get("priority", 1))
            await self.conn.execute(_ADD(self.backend), rows)

    async def schedule(self, run_id: str, due_at: float, *, claims: int = 0,
                       flow: QueueFlow | None = None, **failure: Any) -> None:
        """Make the run due at ``due_at``, releasing any lease (the owner's own release).

        ``claims`` seeds the claim counter of a row created here (a replayed run's: it
        must not repeat the numbers of calls made before the replay), ``flow`` its
        priority and concurrency groups (a row updated keeps its own)."""
        f = flow or QueueFlow()
        await self.conn.execute(_SCHEDULE(self.backend), {
            "rid": run_id, "due": due_at, "no_owner": None, "no_expiry": None,
            "claims": claims, "priority": f.priority,
            "ckey1": f.ckey1, "ckey2": f.ckey2, "rank": rank(due_at, f.priority),
            "failures": failure.get("delivery_failures", 0),
            "first_failure": failure.get("first_failure_at")})

    async def park(self, run_id: str) -> None:
        """The run waits with no deadline (an event, children): keep its row, due never.

        The row is kept rather than deleted so that its ``claims`` counter, which fences
        answers, only ever grows for the life of the run.
        """
        await self.schedule(run_id, NEVER)

    async def wake(self, run_id: str, now: float, flow: QueueFlow | None = None) -> None:
        """Make a waiting run due now (it is not in flight: leave a held lease alone).
        ``flow``: a row created here's priority and groups (a row kept has its own)."""
        f = flow or QueueFlow()
        ins = self.backend.insert(queue).values(
            run_id=run_id, due_at=now, priority=f.priority, ckey1=f.ckey1, ckey2=f.ckey2,
            rank_at=rank(now, f.priority))
        await self.conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run_id"],
                set_={"due_at": self.backend.least(queue.c.due_at, now),
                      "rank_at": self.backend.least(queue.c.rank_at,
                                                    rank(now, queue.c.priority))},
                where=queue.c.lease_owner.is_(None),
            )
        )

    async def remove(self, run_ids: list[str]) -> None:
        if run_ids:
            await self.conn.execute(_REMOVE(self.backend), {"ids": run_ids})

    async def release_all_leases(self) -> int:
        """Forget every lease (only when no other orchestrator can hold one)."""
        res = await self.conn.execute(
            update(queue).where(queue.c.lease_owner.is_not(None))
            .values(lease_owner=None, lease_expires_at=None))
        return int(res.rowcount)

    async def next_wakeup(self) -> float | None:
        """When the next row falls due, or the next lease held on a row expires."""
        row = (await self.conn.execute(_WAKEUP(self.backend))).first()
        return None if row is None or row[0] is None else float(row[0])

    async def next_due(self, now: float) -> float | None:
        """``next_wakeup`` over indexes: the earliest due time of a row not leased (the
        ``due_at`` index, in order), or lease expiry (among the rows due by ``now``, the
        only ones leased), whichever comes first. The idle dispatcher's one read."""
        row = (await self.conn.execute(_NEXT_DUE(self.backend), {"now": now})).first()
        return None if row is None or row[0] is None else float(row[0])

    async def depth(self, now: float) -> list[tuple[str, int, float]]:
        """Per function: how many queue rows are due now (in flight or not), and the
        oldest due time among them. One statement, over the ``due_at`` index (parked rows,
        due never, are not read)."""
        rows = await self.conn.execute(_DEPTH(self.backend), {"now": now})
        return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]


_DEPTH = prepared(lambda b: (
    select(runs.c.function,
           func.count().label("due"),
           func.min(queue.c.due_at).label("oldest"))
    .select_from(queue.join(runs, runs.c.id == queue.c.run_id))
    .where(queue.c.due_at <= bindparam("now"))
    .group_by(runs.c.function)))

