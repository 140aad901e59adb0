"""Group commit of triggers (``engine/group.py``): concurrent works share a transaction;
one work's error reaches its own caller only; works that all ran are never run again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.engine.group import GroupCommit
from orchestrator.errors import Invalid


class FakeHub:
    """Runs each transaction's work on a fresh list (its writes) and keeps the writes of
    those that committed; the commit of transaction number ``fail_on`` fails after its
    work ran."""

    def __init__(self, fail_on: int = 0) -> None:
        self.transactions = 0
        self.committed: list[Any] = []
        self.fail_on = fail_on

    async def transact(self, work: Any) -> Any:
        self.transactions += 1
        writes: list[Any] = []
        result = await work(writes, None)
        await asyncio.sleep(0.01)  # the commit takes a while: others queue meanwhile
        if self.transactions == self.fail_on:
            raise ConnectionError("the commit failed (did it happen?)")
        self.committed += writes
        return result


def work(value: Any, fail: bool = False) -> Any:
    async def w(tx: list[Any], fx: Any) -> Any:
        if fail:
            raise Invalid(f"bad {value}", "input")
        tx.append(value)
        return value
    return w


async def test_concurrent_works_share_transactions_and_get_their_own_results() -> None:
    hub = FakeHub()
    group = GroupCommit(hub)  # type: ignore[arg-type]
    results = await asyncio.gather(*(group.transact(work(i)) for i in range(50)))
    assert results == list(range(50))
    assert sorted(hub.committed) == list(range(50))
    assert hub.transactions <= 3  # the first alone, then the rest together


async def test_a_failing_work_fails_alone() -> None:
    hub = FakeHub()
    group = GroupCommit(hub)  # type: ignore[arg-type]
    outs = await asyncio.gather(*(group.transact(work(i, fail=i == 7)) for i in range(20)),
                                return_exceptions=True)
    assert isinstance(outs[7], Invalid)
    assert [o for i, o in enumerate(outs) if i != 7] == [i for i in range(20) if i != 7]
    assert sorted(hub.committed) == [i for i in range(20) if i != 7]  # each once


async def test_works_that_all_ran_are_not_run_again_when_the_commit_fails() -> None:
    hub = FakeHub(fail_on=2)
    group = GroupCommit(hub)  # type: ignore[arg-type]
    first = asyncio.ensure_future(group.transact(work("first")))
    await asyncio.sleep(0)  # the first transaction is under way: the next ones queue
    rest = [asyncio.ensure_future(group.transact(work(i))) for i in range(10)]
    assert await first == "first"
    outs = await asyncio.gather(*rest, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outs), outs
    assert hub.committed == ["first"] and hub.transactions == 2  # not run again


async def test_a_cancelled_caller_does_not_break_the_group() -> None:
    hub = FakeHub()
    group = GroupCommit(hub)  # type: ignore[arg-type]
    a = asyncio.ensure_future(group.transact(work("a")))
    b = asyncio.ensure_future(group.transact(work("b")))
    c = asyncio.ensure_future(group.transact(work("c")))
    await asyncio.sleep(0)
    b.cancel()
    assert await a == "a" and await c == "c"
    with pytest.raises(asyncio.CancelledError):
        await b
    assert "c" in hub.committed


async def test_a_work_alone_gets_a_transaction_of_its_own_at_once() -> None:
    hub = FakeHub()
    group = GroupCommit(hub)  # type: ignore[arg-type]
    grouped = [asyncio.ensure_future(group.transact(work(i))) for i in range(5)]
    lone = asyncio.ensure_future(group.transact(work("alone"), alone=True))
    await asyncio.gather(*grouped, lone)
    assert await lone == "alone"
    assert hub.transactions == 2  # the five together, and this one on its own
