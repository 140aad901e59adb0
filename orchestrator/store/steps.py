"""The memo: recorded steps of runs. Recording is idempotent per (run, step id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select

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
_MEMO_TAILS = prepared(lambda b: select(steps).where(steps.c.run_id.in_(ids_param()),
                                                     steps.c.seq >= bindparam("since"))
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

    async def memo(self, run_ids: list[str], since: Mapping[str, int] | None = None
                   ) -> dict[str, list[StepRow]]:
        """The memo rows of runs, in order; for a run in ``since``, only its rows from
        that position on (its tail: the app keeps the head, ``engine/tails.py``)."""
        if not run_ids:
            return {}
        out: dict[str, list[StepRow]] = {rid: [] for rid in run_ids}
        whole = [rid for rid in run_ids if rid not in since] if since else run_ids
        if whole:
            for r in (await self.conn.execute(_MEMO(self.backend), {"ids": whole})).all():
                out[r.run_id].append(r)
        tails = [rid for rid in run_ids if rid in since] if since else []
        if tails:
            assert since is not None
            # one statement from the lowest start; rows below a run's own start are dropped
            low = min(since[rid] for rid in tails)
            for r in (await self.conn.execute(_MEMO_TAILS(self.backend),
                                              {"ids": tails, "since": low})).all():
                if r.seq >= since[r.run_id]:
                    out[r.run_id].append(r)
        return out
