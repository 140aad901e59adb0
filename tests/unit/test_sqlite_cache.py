"""SQLite's page caches are bounded for the whole process, not per connection: each
pooled connection's cache otherwise grows to its own ``cache_size`` as the database
does (at 100,000 sleeping runs the orchestrator's RSS went from 98 to 180 MiB, and a
million would have taken it past 200 with every connection of the pool; bench/sleepers.py)."""

from __future__ import annotations

import _sqlite3
import ctypes
from contextlib import AsyncExitStack
from pathlib import Path

from sqlalchemy import text

from orchestrator.store import Store
from orchestrator.store.db import SQLITE_CACHE_BYTES

_lib = ctypes.CDLL(_sqlite3.__file__)  # resolves the libsqlite3 it links
_memory_used = _lib.sqlite3_memory_used
_memory_used.restype = ctypes.c_int64


async def test_reading_the_database_through_every_pooled_connection_stays_in_the_bound(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    await store.open()
    try:
        rows = int(SQLITE_CACHE_BYTES * 0.4) // 1100  # a database of 0.4 x the bound
        async with store.write() as tx:
            await tx.runs.conn.execute(text(
                "INSERT INTO runs (id, function, status, attempt, child_index, parent_waits, "
                "pending_children, created_at, priority, input_json) "
                "VALUES (:id, 'f', 'completed', 0, 0, 0, 0, 1.0, 1, :x)"),
                [{"id": f"r{i:08d}", "x": f'"{"x" * 1000}"'} for i in range(rows)])
        async with AsyncExitStack() as stack:  # four connections checked out at once
            for _ in range(4):
                tx = await stack.enter_async_context(store.read())
                total = (await tx.runs.conn.execute(text(
                    "SELECT sum(length(input_json)) FROM runs"))).scalar_one()
                assert total == rows * 1002
            used = _memory_used()
        assert used < SQLITE_CACHE_BYTES * 1.1, f"{used / 2**20:.0f} MiB"
    finally:
        await store.close()
