"""Runs: creation, status transitions, parents and children, listing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Select, bindparam, func, select, update

from orchestrator.store.base import Repo, ids_param, prepared
from orchestrator.store.models import runs
from orchestrator.store.rows import ChildRow, RunInsert, RunRow, RunSummaryRow
from sdk import protocol as p

TERMINAL = p.TERMINAL

_INSERT = prepared(lambda b: runs.insert())
_GET = prepared(lambda b: select(runs).where(runs.c.id == bindparam("id")))
_CHILD_DONE = prepared(lambda b: (
    update(runs).where(runs.c.id == bindparam("parent"), runs.c.pending_children > 0)
    .values(pending_children=runs.c.pending_children - 1)
    .returning(runs.c.pending_children)))
_SET_PENDING = prepared(lambda b: (
    update(runs).where(runs.c.id == bindparam("rid"))
    .values(pending_children=bindparam("n"), waiting_json=bindparam("waiting"))))
_GET_MANY = prepared(lambda b: select(runs).where(runs.c.id.in_(ids_param())))
_LOCK = prepared(lambda b: select(runs).where(runs.c.id == bindparam("id")).with_for_update())
_FINISH = prepared(lambda b: (
    update(runs)
    .where(runs.c.id == bindparam("rid"), runs.c.status.not_in(TERMINAL))
    .values(status=bindparam("status"), output_json=bindparam("output_json"),
            error_json=bindparam("error_json"), ended_at=bindparam("ended_at"),
            waiting_json=None, timeout_at=None, start_timeout_at=None)
))
_MARK_RUNNING = prepared(lambda b: update(runs)
                         .where(runs.c.id.in_(ids_param()), runs.c.status == "queued")
                         .values(status="running", started_at=bindparam("now")))
_STARTED = prepared(lambda b: update(runs).where(runs.c.id == bindparam("rid"))
                    .values(start_timeout_at=None))
_SET_WAITING = prepared(lambda b: update(runs).where(runs.c.id == bindparam("rid"))
                        .values(waiting_json=bindparam("waiting_json")))
# one scalar subquery per deadline: each reads the first entry of its index. As two
# aggregates of one SELECT, SQLite scans the whole table instead (30 ms at 100,000 runs,
# on the event loop, at every scheduler pass)
_NEXT_DEADLINE = select(
    select(func.min(runs.c.timeout_at)).scalar_subquery(),
    select(func.min(runs.c.start_timeout_at)).scalar_subquery())
_CHILD_COLUMNS = (
    runs.c.id, runs.c.function, runs.c.status, runs.c.output_json, runs.c.error_json,
    runs.c.parent_step, runs.c.child_index, runs.c.task, runs.c.history_json,
    runs.c.attempt, runs.c.started_at, runs.c.ended_at, runs.c.input_json, runs.c.event_json,
    runs.c.parent_id, runs.c.parent_waits, runs.c.timeout_at, runs.c.waiting_json,
    runs.c.priority,
)
_PAGE_COLUMNS = tuple(c for c in runs.c
                      if c.name not in ("input_json", "output_json", "event_json", "events_json"))
_CHILDREN = prepared(lambda b: select(*_CHILD_COLUMNS)
                     .where(runs.c.parent_id == bindparam("parent"))
                     .order_by(runs.c.parent_step, runs.c.child_index))
_STEP_CHILDREN = prepared(lambda b: select(*_CHILD_COLUMNS)
                          .where(runs.c.parent_id == bindparam("parent"),
                                 runs.c.parent_step == bindparam("step"))
                          .order_by(runs.c.child_index))


class RunsRepo(Repo):
    async def insert_many(self, rows: Sequence[RunInsert]) -> None:
        if rows:
            await self.conn.execute(_INSERT(self.backend), rows)

    async def insert_keyed(self, row: RunInsert) -> str | None:
        """Insert a run with an idempotency key; None if the key is taken (even by a
        concurrent transaction: the unique index decides, not a read before)."""
        ins = self.backend.insert(runs).values(**row)
        res = await self.conn.execute(
            ins.on_conflict_do_nothing(index_elements=["function", "idempotency_key"])
            .returning(runs.c.id))
        got = res.first()
        return None if got is None else str(got[0])

    async def by_idempotency(self, function: str, key: str) -> str | None:
        row = (
            await self.conn.execute(
                select(runs.c.id).where(
                    runs.c.function == function, runs.c.idempotency_key == key
                )
            )
        ).first()
        return row.id if row else None

    async def get(self, run_id: str) -> RunRow | None:
        return cast("RunRow | None",
                    (await self.conn.execute(_GET(self.backend), {"id": run_id})).first())

    async def get_many(self, ids: list[str]) -> dict[str, RunRow]:
        if not ids:
            return {}
        rows: list[RunRow] = (await self.conn.execute(_GET_MANY(self.backend), {"ids": ids})).all()
        return {r.id: r for r in rows}

    async def mark_running(self, ids: list[str], now: float) -> None:
        await self.conn.execute(_MARK_RUNNING(self.backend), {"ids": ids, "now": now})

    async def started(self, run_id: str) -> None:
        """The app answered the run's first call: its queue timeout no longer applies."""
        await self.conn.execute(_STARTED(self.backend), {"rid": run_id})

    async def set_waiting(self, run_id: str, waiting_json: str | None) -> None:
        await self.conn.execute(_SET_WAITING(self.backend),
                                {"rid": run_id, "waiting_json": waiting_json})

    async def set_attempt(self, run_id: str, attempt: int, waiting_json: str | None) -> None:
        await self.conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(attempt=attempt, waiting_json=waiting_json)
        )

    async def set_pending_children(self, run_id: str, n: int, waiting_json: str) -> None:
        await self.conn.execute(_SET_PENDING(self.backend),
                                {"rid": run_id, "n": n, "waiting": waiting_json})

    async def finish(self, run_id: str, status: str, output_json: str | None,
                     error_json: str | None, ended_at: float) -> bool:
        """End a run; False if it had already ended (then nothing changed)."""
        res = await self.conn.execute(_FINISH(self.backend), {
            "rid": run_id, "status": status, "output_json": output_json,
            "error_json": error_json, "ended_at": ended_at})
        return bool(res.rowcount)

    async def lock(self, run_id: str) -> RunRow | None:
        """The run, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
        return cast("RunRow | None",
                    (await self.conn.execute(_LOCK(self.backend), {"id": run_id})).first())

    async def active_descendants(self, run_id: str) -> list[str]:
        """Ids of the run's unfinished children, grandchildren... (breadth first)."""
        out: list[str] = []
        frontier = [run_id]
        while frontier:
            rows = await self.conn.execute(
                select(runs.c.id).where(runs.c.parent_id.in_(frontier),
                                        runs.c.status.not_in(TERMINAL)))
            frontier = [r.id for r in rows]
            out += frontier
        return out

    async def timed_out(self, now: float, limit: int) -> list[tuple[RunRow, str]]:
        """Unfinished runs past a deadline, with which one: "run" or "queue"."""
        over: list[RunRow] = (await self.conn.execute(
            select(runs).where(runs.c.timeout_at <= now, runs.c.status.not_in(TERMINAL))
            .limit(limit))).all()
        late: list[RunRow] = (await self.conn.execute(
            select(runs).where(runs.c.start_timeout_at <= now, runs.c.status.not_in(TERMINAL))
            .limit(limit))).all()
        found: dict[str, tuple[RunRow, str]] = {r.id: (r, "queue") for r in late}
        found.update({r.id: (r, "run") for r in over})
        return list(found.values())

    async def next_deadline(self) -> float | None:
        """The earliest run or queue timeout of any run (the scheduler's every pass)."""
        row = (await self.conn.execute(_NEXT_DEADLINE)).first()
        vals = [float(v) for v in (row or ()) if v is not None]
        return min(vals) if vals else None

    async def matching(self, function: str | None, statuses: list[str], since: float | None,
                       until: float | None, limit: int) -> list[RunRow]:
        q = select(runs)
        if function:
            q = q.where(runs.c.function == function)
        if statuses:
            q = q.where(runs.c.status.in_(statuses))
        if since is not None:
            q = q.where(runs.c.created_at >= since)
        if until is not None:
            q = q.where(runs.c.created_at < until)
        return cast("list[RunRow]",
                    list(await self.conn.execute(q.order_by(runs.c.id).limit(limit))))

    async def reset(self, run_id: str, status: str, input_json: str | None, history_json: str,
                    timeout_at: float | None, start_timeout_at: float | None) -> None:
        """Back to ``status`` for a replay (its memo is the caller's business)."""
        values: dict[str, Any] = {
            "status": status, "attempt": 0, "output_json": None, "error_json": None,
            "waiting_json": None, "ended_at": None, "pending_children": 0,
            "history_json": history_json, "timeout_at": timeout_at,
            "start_timeout_at": start_timeout_at,
        }
        if input_json is not None:
            values["input_json"] = input_json
        await self.conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    async def detach_task(self, run_id: str, label: str) -> None:
        """Keep a replaced task run visible under its workflow, but no longer as the task:
        its step and its task are both ``label`` (``<task>#<n>``)."""
        await self.conn.execute(update(runs).where(runs.c.id == run_id)
                                .values(parent_step=label, task=label))

    async def child_done(self, parent_id: str) -> int | None:
        """One waited-for child of ``parent_id`` ended: the children still pending."""
        rows = list(await self.conn.execute(_CHILD_DONE(self.backend), {"parent": parent_id}))
        return int(rows[0][0]) if rows else None

    async def children_of(self, parent_id: str, step: str | None = None) -> list[ChildRow]:
        if step is None:
            res = await self.conn.execute(_CHILDREN(self.backend), {"parent": parent_id})
        else:
            res = await self.conn.execute(_STEP_CHILDREN(self.backend),
                                          {"parent": parent_id, "step": step})
        return cast("list[ChildRow]", list(res))

    async def page(
        self, function: str | None, status: str | None, limit: int, cursor: str | None,
        *, since: float | None = None, until: float | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[RunSummaryRow]:
        """Newest first (ids sort by creation time), after ``cursor``; ``since <=
        created_at < until``; with ``ids``, only those runs (an empty list: none)."""
        q = select(*_PAGE_COLUMNS)
        if function:
            q = q.where(runs.c.function == function)
        if status:
            q = q.where(runs.c.status == status)
        if cursor:
            q = q.where(runs.c.id < cursor)
        q = _created_within(q, since, until)
        if ids is not None:
            q = q.where(runs.c.id.in_(list(ids)))
        return cast("list[RunSummaryRow]",
                    list(await self.conn.execute(q.order_by(runs.c.id.desc()).limit(limit))))

    async def counts(self, function: str | None, since: float | None,
                     until: float | None) -> dict[str, int]:
        """Runs per status (only the statuses some run has), in one GROUP BY."""
        q = counts_query(function, since, until)
        return {str(r[0]): int(r[1]) for r in await self.conn.execute(q)}


def counts_query(function: str | None, since: float | None, until: float | None) -> Any:
    """Runs per status: a function's over ``ix_runs_function_created`` (the time range
    read, not all its runs), every function's over ``ix_runs_status_id`` or
    ``ix_runs_created``."""
    q = select(runs.c.status, func.count()).group_by(runs.c.status)
    if function:
        q = q.where(runs.c.function == function)
    return _created_within(q, since, until)


S = TypeVar("S", bound=Select[Any])


def _created_within(q: S, since: float | None, until: float | None) -> S:
    """``q`` limited to the runs created in ``[since, until)`` (either end open if None)."""
    if since is not None:
        q = q.where(runs.c.created_at >= since)
    if until is not None:
        q = q.where(runs.c.created_at < until)
    return q
