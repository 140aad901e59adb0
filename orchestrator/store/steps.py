"""The memo: recorded steps of runs. Recording is idempotent per (run, step id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from orchestrator.store.base import Repo, ids_param, prepared
from orchestrator.store.db import Backend
from orchestrator.store.models import steps
from orchestrator.store.rows import StepInsert, StepRow


def _record(backend: Backend) -> Any:
    ins = backend.insert(steps)
    return ins.on_conflict_do_update(
        index_elements=["run_id", "step_id"],
        set_={
            "status": ins.excluded.status,
            "attempts": ins.excluded.attempts,
            "output_json": ins.excluded.output_json,
            "error_json": ins.excluded.error_json,
            "ended_at": ins.excluded.ended_at,
        },
        where=steps.c.status == "retrying",
    )


_RECORD = prepared(_record)
_MEMO = prepared(lambda b: select(steps).where(steps.c.run_id.in_(ids_param()))
                 .order_by(steps.c.seq))


class StepsRepo(Repo):
    async def record(self, rows: Sequence[StepInsert]) -> None:
        """Insert memo rows; a row already final is never overwritten (a repeated call
        records nothing twice), a ``retrying`` row is updated by the next attempt."""
        if rows:
            await self.conn.execute(_RECORD(self.backend), rows)

    async def forget(self, run_id: str, step_ids: list[str] | None) -> None:
        """Drop memo rows of a run (all of them when ``step_ids`` is None), for a replay."""
        q = delete(steps).where(steps.c.run_id == run_id)
        if step_ids is not None:
            if not step_ids:
                return
            q = q.where(steps.c.step_id.in_(step_ids))
        await self.conn.execute(q)

    async def memo(self, run_ids: list[str]) -> dict[str, list[StepRow]]:
        if not run_ids:
            return {}
        rows: list[StepRow] = (await self.conn.execute(_MEMO(self.backend), {"ids": run_ids})).all()
        out: dict[str, list[StepRow]] = {rid: [] for rid in run_ids}
        for r in rows:
            out[r.run_id].append(r)
        return out
