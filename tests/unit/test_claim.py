"""Leases: runs created already claimed carry a whole run row (``store.CreatedRun``)."""

from __future__ import annotations

from orchestrator.engine.claim import Lease
from orchestrator.store import CreatedRun


def test_a_run_taken_under_a_lease_is_a_whole_run_row() -> None:
    lease = Lease("me", 10.0, room=1)
    row = {"id": "r1", "function": "f", "input_json": "1", "task": "t",
           "start_timeout_at": 5.0}
    assert lease.take(row, None) is True
    assert lease.take({**row, "id": "r2"}, None) is False  # no room left
    [claim] = lease.claims
    assert claim.call_id == "r1:1" and claim.memo == []
    run = claim.run
    assert isinstance(run, CreatedRun)
    assert (run.task, run.start_timeout_at, run.status) == ("t", 5.0, "queued")
    assert (run.output_json, run.history_json, run.ended_at) == (None, None, None)
    lease.release({"r1"})
    assert lease.claims == [] and lease.room == 1
