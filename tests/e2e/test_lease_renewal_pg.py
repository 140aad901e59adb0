"""Lease renewal on a real PostgreSQL: it never waits for a row lock (so it cannot take
part in a deadlock), and a failure of its transaction is retried, not lost."""

from __future__ import annotations

import asyncio

from orchestrator.store import Store


async def _leased(store: Store, ids: list[str], owner: str) -> None:
    async with store.write() as tx:
        await tx.queue.add_many([{"run_id": rid, "due_at": 1.0} for rid in ids])
        await tx.queue.claim(owner, 2.0, 100.0, len(ids))


async def test_renewal_skips_a_row_locked_by_another_transaction(store: Store) -> None:
    await _leased(store, ["a", "b", "c"], "me")
    locked = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:  # another transaction holds b's row (as the reducer would)
        async with store.write() as tx:
            await tx.queue.schedule("b", 50.0)
            locked.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await locked.wait()
    try:
        # it used to wait for b's lock: UPDATE ... WHERE run_id IN (...) in plan order
        renewed = await asyncio.wait_for(
            store.transact(lambda tx: tx.queue.extend("me", ["c", "b", "a"], 500.0)), 5)
    finally:
        release.set()
        await task
    assert renewed == 2
    async with store.read() as tx:
        rows = await tx.queue.leases(["a", "b", "c"])
    assert rows == {"a": ("me", 500.0), "b": (None, None), "c": ("me", 500.0)}
