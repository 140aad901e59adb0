"""What ``wait_for_event``'s lookback costs, and the lock it adds to storing events.

    python -m bench.lookback [--old 100000] [--repeat 200]

For SQLite and PostgreSQL (a throwaway cluster, ``tests/support/pg.py``): the lookup a
wait with a lookback makes when it is recorded (``engine.lookback.recent_event``, in a
write transaction of its own, as the reducer takes its lock), on an events table holding
one matching event, then on one holding ``--old`` events of the same name days old, as
many of other names, and 20,000 of other names inside the window. Then, on PostgreSQL,
storing one event (``ingest_events``) with and without the shared per-name lock, in
alternating rounds. Prints medians (and the 95th percentile) in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from orchestrator.engine import ingest
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.lookback import recent_event
from orchestrator.engine.registry import Registry
from orchestrator.store import Store, Tx
from sdk import protocol as p
from tests.support.pg import PgCluster

NOW = 1_800_000_000.0
WINDOW = 20_000


async def seed(store: Store, old: int) -> None:
    pg = store.backend.name == "postgresql"
    rows = ("SELECT i FROM generate_series(0, {n} - 1) AS g(i)" if pg else
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n} - 1) "
            "SELECT i FROM g")
    fill = ("INSERT INTO events (id, name, data_json, ts, run_ids_json) "
            "SELECT '{prefix}' || i, {name}, '{{\"key\": \"k\"}}', {ts} + i * {step}, '[]' "
            "FROM ({rows}) AS s")
    async with store.write() as tx:
        for prefix, name, n, ts, step in (
                ("old", "'look.x'", old, NOW - 86400 * 5, 1.0),
                ("else", "'look.else' || (i % 10)", old, NOW - 86400 * 5, 1.0),
                ("busy", "'look.busy' || (i % 10)", WINDOW, NOW - 50, 0.002)):
            if n:
                await tx.events.conn.execute(text(fill.format(
                    prefix=prefix, name=name, ts=ts, step=step, rows=rows.format(n=n))))
        await tx.events.insert_new([{"id": "new-k", "name": "look.x", "ts": NOW - 5,
                                     "data_json": '{"key": "k"}', "run_ids_json": "[]"}])
    if pg:
        async with store.write() as tx:
            await tx.events.conn.execute(text("ANALYZE events"))


async def timed(store: Store, work: Callable[[Tx], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with store.write() as tx:
            await work(tx)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def lookup(url: str, old: int, repeat: int) -> list[float]:
    store = Store(url)
    await store.open()
    try:
        await seed(store, old)
        op = p.wait_event_op("w", 1, "w", "look.x", {"data.key": "k"}, None, 60.0)

        async def look(tx: Tx) -> None:
            assert await recent_event(tx, "r1", op, NOW) is not None
        return await timed(store, look, repeat)
    finally:
        await store.close()


async def ingest_cost(url: str, rounds: int = 30, per: int = 20) -> tuple[float, float]:
    store = Store(url)
    await store.open()
    original = ingest.guard_events

    async def no_lock(tx: Tx, names: object) -> None:
        return None

    async def store_one(tx: Tx) -> None:
        await ingest.ingest_events(tx, [{"name": "look.x", "data": {"key": "k"}}],
                                   time.time(), Effects(registry=Registry(store)))
    try:
        with_lock, without = [], []
        for _ in range(rounds):
            with_lock += await timed(store, store_one, per)
            ingest.guard_events = no_lock  # type: ignore[assignment]
            try:
                without += await timed(store, store_one, per)
            finally:
                ingest.guard_events = original
        return statistics.median(with_lock), statistics.median(without)
    finally:
        await store.close()


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.2f} ms, p95 {sorted(ms)[int(len(ms) * 0.95)]:.2f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    pg = PgCluster().start()
    try:
        for backend in ("sqlite", "postgresql"):
            for old in (0, args.old):
                url = (f"sqlite:///{tempfile.mkdtemp()}/lookback.db" if backend == "sqlite"
                       else pg.create_db())
                what = "1 event" if old == 0 else (f"{old:,} old of the name, {old:,} old "
                                                   f"others, {WINDOW:,} others in the window")
                print(f"lookback {backend:10} {what}: "
                      f"{summary(await lookup(url, old, args.repeat))}")
        a, b = await ingest_cost(pg.create_db())
        print(f"ingest of one event (postgresql): with the shared lock {a:.2f} ms, "
              f"without {b:.2f} ms (medians)")
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
