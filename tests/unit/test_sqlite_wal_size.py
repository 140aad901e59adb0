"""The WAL file shrinks back once checkpointed: without a journal size limit, SQLite
reuses it from the start but keeps the file at its largest (758 MB on disk, for good,
after creating 1,000,000 sleeping runs; bench/sleepers.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from orchestrator.store import Store
from orchestrator.store.db import SQLITE_WAL_LIMIT_BYTES


async def _insert(store: Store, lo: int, n: int) -> None:
    async with store.write() as tx:
        await tx.runs.conn.execute(text(
            "INSERT INTO runs (id, function, status, attempt, child_index, parent_waits, "
            "pending_children, created_at, priority, input_json) "
            "VALUES (:id, 'f', 'completed', 0, 0, 0, 0, 1.0, 1, :x)"),
            [{"id": f"r{i:08d}", "x": f'"{"x" * 1000}"'} for i in range(lo, lo + n)])


async def test_the_wal_is_cut_back_to_the_limit_after_a_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    wal = tmp_path / "wal.db-wal"
    store = Store(f"sqlite:///{db}")
    await store.open()
    try:
        big = int(SQLITE_WAL_LIMIT_BYTES * 1.5) // 1000  # one transaction past the limit
        await _insert(store, 0, big)
        assert wal.stat().st_size > SQLITE_WAL_LIMIT_BYTES
        for _ in range(100):  # the background checkpoint copies it into the database
            await asyncio.sleep(0.1)
            await _insert(store, big + _, 1)  # a write after it starts the WAL over
            if wal.stat().st_size <= SQLITE_WAL_LIMIT_BYTES:
                break
        assert wal.stat().st_size <= SQLITE_WAL_LIMIT_BYTES, wal.stat().st_size
    finally:
        await store.close()
