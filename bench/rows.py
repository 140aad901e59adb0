"""What a typed row costs, per row: the choice behind orchestrator/store/rows.py.

    python -m bench.rows [--rows 100] [--repeat 200]

Reads a run's memo of ``--rows`` steps (the hot path reads it on every call) from a
SQLite file, as SQLAlchemy ``Row``s and as the fast path's namedtuples, then times, per
row: reading its 11 attributes as returned, and turning it into a typed object first
(the row types' ``cast``, a dataclass with slots, a NamedTuple, a pydantic model, the
SQLModel table class). Prints microseconds per row, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydantic import BaseModel
from sqlalchemy import select

from orchestrator.store import StepRow, Store
from orchestrator.store.models import Step, steps
from orchestrator.store.steps import _MEMO


@dataclass(slots=True)
class StepData:
    run_id: str
    step_id: str
    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    output_json: str | None
    error_json: str | None
    started_at: float | None
    ended_at: float | None


@dataclass(slots=True, frozen=True)
class FrozenStepData:
    run_id: str
    step_id: str
    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    output_json: str | None
    error_json: str | None
    started_at: float | None
    ended_at: float | None


class StepTuple(NamedTuple):
    run_id: str
    step_id: str
    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    output_json: str | None
    error_json: str | None
    started_at: float | None
    ended_at: float | None


class StepModel(BaseModel):
    run_id: str
    step_id: str
    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    output_json: str | None
    error_json: str | None
    started_at: float | None
    ended_at: float | None


def read_all(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(r.run_id, r.step_id, r.seq, r.name, r.kind, r.status, r.attempts, r.output_json,
             r.error_json, r.started_at, r.ended_at) for r in rows]


async def load(n: int) -> tuple[list[Any], list[Any]]:
    """The memo as SQLAlchemy Rows and as fast-path namedtuples."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'rows.db'}")
        await store.open()
        try:
            async with store.write() as tx:
                await tx.steps.record([
                    {"run_id": "r", "step_id": f"s{i}", "seq": i, "name": "step", "kind": "step",
                     "status": "completed", "attempts": 0, "output_json": str(i),
                     "error_json": None, "started_at": 1.0, "ended_at": 2.0}
                    for i in range(n)])
            async with store.read() as tx:
                fast = (await tx.steps.memo(["r"]))["r"]
                slow = list(await tx.steps.conn.execute(
                    select(steps).where(steps.c.run_id == "r").order_by(steps.c.seq)))
            assert type(_MEMO(store.backend)).__name__ == "Plan"
        finally:
            await store.close()
    return slow, fast


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)
    slow, fast = asyncio.run(load(args.rows))
    n = len(fast)

    def per_row(fn: Callable[[], object]) -> str:
        best = min(timeit.repeat(fn, number=1, repeat=args.repeat))
        return f"{best / n * 1e6:7.3f} us"

    cases: list[tuple[str, Callable[[], object]]] = [
        ("read 11 attributes: SQLAlchemy Row", lambda: read_all(slow)),
        ("read 11 attributes: fast-path namedtuple", lambda: read_all(fast)),
        ("cast to list[StepRow], then read", lambda: read_all(cast("list[StepRow]", fast))),
        ("dataclass(slots), then read", lambda: read_all([StepData(*r) for r in fast])),
        ("dataclass(slots, frozen), then read",
         lambda: read_all([FrozenStepData(*r) for r in fast])),
        ("NamedTuple._make, then read", lambda: read_all([StepTuple._make(r) for r in fast])),
        ("pydantic model_construct, then read",
         lambda: read_all([StepModel.model_construct(**r._asdict()) for r in fast])),
        ("pydantic model (validated), then read",
         lambda: read_all([StepModel(**r._asdict()) for r in fast])),
        ("SQLModel table class Step(...), then read",
         lambda: read_all([Step(**r._asdict()) for r in fast])),
        ("SQLModel Step.model_validate(row), then read",
         lambda: read_all([Step.model_validate(r) for r in fast])),
    ]
    print(f"# Python {sys.version.split()[0]}, {n} memo rows, per row, best of {args.repeat}")
    for name, fn in cases:
        print(f"{name:<48} {per_row(fn)}")


if __name__ == "__main__":
    main()
