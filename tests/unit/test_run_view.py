"""Which runs the run view looks up children for (``engine._may_have_children``): only a
spawn makes them, and a completed run that spawned has its memo entry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from orchestrator.engine.engine import _may_have_children
from sdk import protocol as p


def _run(**kw: Any) -> Any:
    return SimpleNamespace(**{"status": "completed", "pending_children": 0,
                              "history_json": None, **kw})


def _step(kind: str) -> Any:
    return SimpleNamespace(kind=kind)


def test_a_completed_run_without_a_spawn_has_no_children() -> None:
    assert not _may_have_children(_run(), [_step(p.MemoKind.STEP), _step(p.MemoKind.SLEEP)])
    assert not _may_have_children(_run(history_json="[]"), [])


def test_a_spawn_in_the_memo_means_children() -> None:
    assert _may_have_children(_run(), [_step(p.MemoKind.STEP), _step(p.MemoKind.SPAWN)])
    assert _may_have_children(_run(), [_step(p.MemoKind.CHILDREN)])


def test_children_waited_for_are_looked_up() -> None:
    assert _may_have_children(_run(status="running", pending_children=3), [])


def test_a_run_that_did_not_complete_is_looked_up() -> None:
    """Cancelled while its children ran: the gather into the ended run records nothing."""
    for status in ("cancelled", "failed", "timed_out", "running", "queued"):
        assert _may_have_children(_run(status=status), [])


def test_a_replayed_run_is_looked_up() -> None:
    """A replay forgets the memo, not the children the earlier attempt started."""
    assert _may_have_children(_run(history_json='[{"from": "start"}]'), [])
