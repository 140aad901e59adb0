"""The supervised loop: survives any exception, backs off (capped), reports its health."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from orchestrator.engine.notifier import Notifier
from orchestrator.loops import Health, supervise


async def test_a_failing_pass_is_retried_with_capped_backoff_and_reported() -> None:
    health = Health()
    calls: list[float] = []
    seen_failing: list[dict[str, str]] = []

    async def pass_() -> None:
        calls.append(time.monotonic())
        seen_failing.append(health.problems())
        if len(calls) <= 5:
            raise ConnectionRefusedError(f"down {len(calls)}")
        if len(calls) == 6:
            return
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise("probe", pass_, health, first_delay=0.01,
                                         max_delay=0.04))
    try:
        for _ in range(200):
            if len(calls) >= 7:
                break
            await asyncio.sleep(0.01)
        assert len(calls) == 7  # it never ended: the 6th pass succeeded, the 7th sleeps
        gaps = [b - a for a, b in itertools.pairwise(calls[:6])]  # 0.01, 0.02, 0.04 (cap)...
        assert gaps[0] >= 0.009 and all(0.035 <= g < 0.2 for g in gaps[2:]), gaps
        assert seen_failing[5] == {"probe": "ConnectionRefusedError: down 5"}
        assert health.problems() == {}  # recovered
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_any_exception_is_survived() -> None:
    health = Health()
    n = 0

    async def pass_() -> None:
        nonlocal n
        n += 1
        raise [KeyError("k"), AssertionError("a"), RuntimeError("r")][n % 3]

    task = asyncio.create_task(supervise("bad", pass_, health, first_delay=0.001,
                                         max_delay=0.001))
    await asyncio.sleep(0.1)
    assert not task.done() and n > 5
    assert "bad" in health.problems()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_row_due_before_the_planned_wake_wakes_the_dispatcher() -> None:
    n = Notifier()
    n.due_at(time.time() + 100)  # not idle (planned_wake inf): any due row wakes it
    assert n.work.is_set()
    n.work.clear()
    n.planned_wake = time.time() + 1.0
    n.due_at(time.time() + 2.0)  # after the planned wake: nothing to do
    assert not n.work.is_set()
    n.due_at(time.time() + 0.3)  # before it: plan again
    assert n.work.is_set()
