"""Runs: creation, status transitions, parents and children, listing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import runs

TERMINAL = ("completed", "failed", "cancelled")


class RunsRepo(Repo):
    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(runs.insert(), rows)

    async def by_idempotency(self, function: str, key: str) -> str | None:
        row = (
            await self.conn.execute(
                select(runs.c.id).where(
                    runs.c.function == function, runs.c.idempotency_key == key
                )
            )
        ).first()
        return row.id if row else None

    async def get(self, run_id: str) -> Any:
        return (await self.conn.execute(select(runs).where(runs.c.id == run_id))).first()

    async def get_many(self, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}
        rows = await self.conn.execute(select(runs).where(runs.c.id.in_(ids)))
        return {r.id: r for r in rows}

    async def mark_running(self, ids: list[str], now: float) -> None:
        await self.conn.execute(
            update(runs)
            .where(runs.c.id.in_(ids), runs.c.status == "queued")
            .values(status="running", started_at=now)
        )

    async def set_waiting(self, run_id: str, waiting_json: str | None) -> None:
        await self.conn.execute(
            update(runs).where(runs.c.id == run_id).values(waiting_json=waiting_json)
        )

    async def set_attempt(self, run_id: str, attempt: int, waiting_json: str | None) -> None:
        await self.conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(attempt=attempt, waiting_json=waiting_json)
        )

    async def set_pending_children(self, run_id: str, n: int, waiting_json: str) -> None:
        await self.conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(pending_children=n, waiting_json=waiting_json)
        )

    async def finish_many(self, rows: list[dict[str, Any]]) -> None:
        """End runs: rows of {rid, status, output_json, error_json, ended_at}."""
        if not rows:
            return
        stmt = (
            update(runs)
            .where(runs.c.id == bindparam("rid"), runs.c.status.not_in(TERMINAL))
            .values(
                status=bindparam("status"),
                output_json=bindparam("output_json"),
                error_json=bindparam("error_json"),
                ended_at=bindparam("ended_at"),
                waiting_json=None,
            )
        )
        await self.conn.execute(stmt, rows)

    async def child_done(self, parent_id: str) -> int | None:
        """One waited-for child of ``parent_id`` ended: the children still pending."""
        row = (
            await self.conn.execute(
                update(runs)
                .where(runs.c.id == parent_id, runs.c.pending_children > 0)
                .values(pending_children=runs.c.pending_children - 1)
                .returning(runs.c.pending_children)
            )
        ).first()
        return None if row is None else int(row[0])

    async def children_of(self, parent_id: str, step: str | None = None) -> list[Any]:
        q = select(
            runs.c.id, runs.c.function, runs.c.status, runs.c.output_json, runs.c.error_json,
            runs.c.parent_step, runs.c.child_index,
        ).where(runs.c.parent_id == parent_id)
        if step is not None:
            q = q.where(runs.c.parent_step == step)
        return list(await self.conn.execute(q.order_by(runs.c.parent_step, runs.c.child_index)))

    async def page(
        self, function: str | None, status: str | None, limit: int, cursor: str | None
    ) -> list[Any]:
        cols = [c for c in runs.c if c.name not in ("input_json", "output_json", "event_json")]
        q = select(*cols)
        if function:
            q = q.where(runs.c.function == function)
        if status:
            q = q.where(runs.c.status == status)
        if cursor:
            q = q.where(runs.c.id < cursor)
        return list(await self.conn.execute(q.order_by(runs.c.id.desc()).limit(limit)))


def unfinished(ids: list[str]) -> Any:
    return and_(runs.c.id.in_(ids), or_(*[runs.c.status == s for s in ("queued", "running")]))
