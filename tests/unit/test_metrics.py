"""Queue depth and lag per function, from the store (one query), cached for the TTL."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.engine.metrics import Metrics
from orchestrator.store import Store, Tx


def _gauges(text: str) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["function"]): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name.startswith("durable_queue_")}


async def test_depth_and_lag_per_function(store: Store) -> None:
    now = time.time()
    due = {"r1": ("a", now - 30), "r2": ("a", now - 5), "r3": ("b", now - 1),
           "r4": ("b", now + 600), "r5": ("c", 1e12)}

    async def seed(tx: Tx) -> None:
        await tx.runs.insert_many([{"id": rid, "function": fn, "input_json": "null",
                                    "created_at": now} for rid, (fn, _) in due.items()])
        await tx.queue.add_many([{"run_id": rid, "due_at": at, "claims": 0}
                                 for rid, (_, at) in due.items()])

    await store.transact(seed)
    m = Metrics(store, cache_seconds=60.0)
    g = _gauges((await m.exposition()).decode())
    assert g[("durable_queue_depth", "a")] == 2
    assert g[("durable_queue_depth", "b")] == 1
    assert ("durable_queue_depth", "c") not in g  # parked: due never
    assert 29 <= g[("durable_queue_lag_seconds", "a")] <= 40
    assert 0 <= g[("durable_queue_lag_seconds", "b")] <= 10
    await store.transact(lambda tx: tx.queue.remove(["r1", "r2"]))
    cached = _gauges((await m.exposition()).decode())
    assert cached[("durable_queue_depth", "a")] == 2  # within the TTL: the same reading
    m.queue.ttl = 0.0
    fresh = _gauges((await m.exposition()).decode())
    assert ("durable_queue_depth", "a") not in fresh
