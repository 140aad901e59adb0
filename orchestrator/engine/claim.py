"""A run claimed for one call, and leases taken on runs created already claimed."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.engine.registry import FunctionInfo
from orchestrator.engine.tails import MemoTails
from orchestrator.store import CreatedRun, RunInsert, RunRow, StepRow


@dataclass
class Claim:
    """A run claimed for one call, with what was loaded for it."""

    run_id: str
    claims: int
    delivery_failures: int
    first_failure_at: float | None
    run: RunRow
    fn: FunctionInfo | None = None
    memo: list[StepRow] = field(default_factory=list)
    """The run's recorded steps, read with the claim (empty for a run created by it)."""
    memo_from: int = 0
    """The position ``memo`` starts at: the app keeps the head before it (``tails``)."""
    limited: bool = False
    """Claimed by the limited claim: its end frees a slot of a concurrency group."""

    @property
    def call_id(self) -> str:
        return f"{self.run_id}:{self.claims}"

    def log_extra(self) -> dict[str, str | None]:
        """The ``extra`` of a log call about this call (``orchestrator.logs.CONTEXT``);
        built only when something is logged."""
        return {"run_id": self.run_id, "call_id": self.call_id,
                "app": self.fn.app_id if self.fn is not None else None,
                "function": self.run.function}


@dataclass
class Lease:
    """Permission to create up to ``room`` runs already claimed by ``owner``.

    Runs created under a lease skip the queue: once their transaction commits, the
    dispatcher delivers them at once (no claim transaction, no wake-up latency).
    """

    owner: str
    until: float
    room: int
    claims: list[Claim] = field(default_factory=list)
    tails: MemoTails | None = None
    """Where the memo of a run claimed under it may start (the dispatcher's)."""

    def release(self, run_ids: set[str]) -> None:
        """Give back claims on runs that were not created after all."""
        kept = [c for c in self.claims if c.run_id not in run_ids]
        self.room += len(self.claims) - len(kept)
        self.claims = kept

    def take(self, row: RunInsert, fn: FunctionInfo | None) -> bool:
        if self.room <= 0:
            return False
        self.room -= 1
        self.claims.append(Claim(row["id"], 1, 0, None, CreatedRun(**row), fn))
        return True
